// `--set key.path=value`: command-line edits applied to the parsed file before validation, so a
// bad override is reported like any other problem, but pointing at the --set that caused it.
import { parseDocument } from 'yaml';
import { SpecError, formatPath, type Diagnostic, type PathSegment } from './diagnostics.js';
import { describeValue, isPlainObject } from './describe.js';
import { MAX_NESTING, nestingOf, structureProblem, yamlErrorText, type SpecDocument } from './document.js';
import { quoteShort } from '../util/text.js';
import { didYouMean } from '../util/suggest.js';

export interface OverrideOptions {
  /**
   * Names that are top-level keys even when the file does not use them (pass the schema's top-level
   * property names), so `--set seed=7` or `--set backend.name=wasm` work on a file without them.
   */
  topLevelKeys?: readonly string[];
}

class BadSet extends Error {}

/** The value after `=`, read as a YAML flow value: `3` is a number, `[1, 2]` a list, `abc` a string. */
function parseValue(text: string): unknown {
  const shown = quoteShort(text, 80);
  const tooDeep = `the value ${shown} nests more than ${MAX_NESTING} levels deep`;
  let doc;
  try {
    doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  } catch (err) {
    if (err instanceof RangeError) throw new BadSet(tooDeep);
    throw err;
  }
  if (doc.errors.some((e) => /call stack/i.test(e.message))) throw new BadSet(tooDeep);
  if (doc.errors.length) throw new BadSet(`the value ${shown} is not valid YAML: ${yamlErrorText(doc.errors[0]!.message)}`);
  const problem = structureProblem(doc.contents);
  if (problem) throw new BadSet(`the value ${shown}: ${problem.message}`);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 10 }) ?? null;
  } catch (err) {
    throw new BadSet(`the value ${shown} cannot be read: ${(err as Error).message}`);
  }
  if (nestingOf(value) > MAX_NESTING) throw new BadSet(tooDeep);
  return value;
}

/** Turns `teacher.epochs` into the full path, resolving the stage-name shorthand. */
function resolvePath(root: Record<string, unknown>, segs: string[], options: OverrideOptions): string[] {
  const first = segs[0]!;
  if (Object.hasOwn(root, first) || (options.topLevelKeys ?? []).includes(first)) return segs;
  const stages = root['stages'];
  const stageNames = isPlainObject(stages) ? Object.keys(stages) : [];
  if (stageNames.includes(first)) return ['stages', ...segs];
  // `--set seed=7` on a file without `seed`, and no schema keys given: a new top-level key.
  if (segs.length === 1) return segs;
  const guess = didYouMean(first, stageNames) ?? didYouMean(first, [...Object.keys(root), ...(options.topLevelKeys ?? [])]);
  const hint = guess === undefined ? '' : `; did you mean ${JSON.stringify(guess)}?`;
  const known = stageNames.length ? ` (stages: ${stageNames.join(', ')})` : ' (the file defines no stages)';
  throw new BadSet(`unknown stage ${JSON.stringify(first)}${hint}${known}`);
}

/**
 * Sets `value` at `segs`, creating missing mappings on the way. Returns the path of what the --set
 * brought into being (the value, or the outermost mapping it created), list indices as numbers.
 */
function setAt(root: Record<string, unknown>, segs: string[], value: unknown): PathSegment[] {
  const path: PathSegment[] = [];
  let created: PathSegment[] | undefined;
  let container: unknown = root;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    const last = i === segs.length - 1;
    if (Array.isArray(container)) {
      if (!/^\d+$/.test(seg)) {
        throw new BadSet(`${formatPath(path)} is a list; expected an item number, found ${JSON.stringify(seg)}`);
      }
      const index = Number(seg);
      if (index > container.length) {
        throw new BadSet(`${formatPath(path)} has ${container.length} items; index ${index} is out of range`);
      }
      path.push(index);
      if (last) {
        container[index] = value;
      } else {
        if (container[index] === undefined || container[index] === null) {
          container[index] = {};
          created ??= [...path];
        }
        container = container[index];
      }
    } else if (isPlainObject(container)) {
      path.push(seg);
      if (last) {
        container[seg] = value;
      } else {
        if (container[seg] === undefined || container[seg] === null) {
          container[seg] = {};
          created ??= [...path];
        }
        container = container[seg];
      }
    } else {
      throw new BadSet(`cannot set ${segs.join('.')}: ${formatPath(path)} is ${describeValue(container)}, not a mapping or a list`);
    }
  }
  return created ?? path;
}

/**
 * Applies `--set` expressions in order. Every malformed one is reported (file `--set`), not just
 * the first. Each value set is marked so `doc.positionOf` answers `--set <expr>` for it.
 */
export function applyOverrides(doc: SpecDocument, sets: string[], options: OverrideOptions = {}): void {
  const diagnostics: Diagnostic[] = [];
  for (const expr of sets) {
    try {
      const eq = expr.indexOf('=');
      if (eq < 0) throw new BadSet('expected key.path=value, e.g. --set stages.teacher.epochs=3');
      const keyText = expr.slice(0, eq).trim();
      if (!keyText) throw new BadSet('the key before "=" is empty');
      const segs = keyText.split('.');
      if (segs.some((s) => s === '')) throw new BadSet(`the key ${JSON.stringify(keyText)} has an empty part`);
      const value = parseValue(expr.slice(eq + 1));
      if (doc.data === null || doc.data === undefined) doc.data = {};
      if (!isPlainObject(doc.data)) throw new BadSet(`the file holds ${describeValue(doc.data)}, not a mapping`);
      const path = setAt(doc.data, resolvePath(doc.data, segs, options), value);
      doc.markOverridden(path, `--set ${expr}`);
      doc.overrides.push(expr);
    } catch (err) {
      if (!(err instanceof BadSet)) throw err;
      diagnostics.push({ file: '--set', line: 0, col: 0, path: '', message: `${quoteShort(expr, 80)}: ${err.message}` });
    }
  }
  if (diagnostics.length) throw new SpecError(diagnostics, '--set');
}
