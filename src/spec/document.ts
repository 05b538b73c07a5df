// Parses a pipeline file into plain data plus a map from key paths to line:col, so every later
// check (schema, --set, stage builders) can point at the exact place in the user's file.
import { readFile } from 'node:fs/promises';
import {
  LineCounter,
  parseDocument,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  type Document,
  type Node as YamlNode,
} from 'yaml';
import { InputError } from '../errors.js';
import { SpecError, sortDiagnostics, type Diagnostic, type PathSegment, type SourcePosition } from './diagnostics.js';

/**
 * A parsed pipeline file. `data` is plain JSON-like data (mappings are objects, sequences arrays).
 * `positionOf` falls back to the nearest parent with a known place (as dvc's strictyaml does), so
 * it always answers; values set by `--set` answer `{file: '--set <expr>', line: 0, col: 0}`.
 */
export interface SpecDocument {
  readonly file: string;
  data: unknown;
  /**
   * Where the value at `path` is written. `at: 'key'` gives the key itself (`epochs:` rather than
   * the `3` after it), which is where unknown-key and missing-key problems belong. List items have
   * no key, so both answer the item.
   */
  positionOf(path: readonly PathSegment[], at?: 'key' | 'value'): SourcePosition;
  /** Records that the value at `path` (and everything under it) now comes from `source`, e.g. `--set a.b=1`. */
  markOverridden(path: readonly PathSegment[], source: string): void;
  /** The `--set` expressions applied, in order. */
  readonly overrides: string[];
}

/** Alias expansions allowed when building data: generous for real anchors, far below a "billion laughs" bomb. */
export const MAX_ALIAS_COUNT = 100;

interface Place {
  key: { line: number; col: number };
  value: { line: number; col: number };
}

function pathKey(path: readonly PathSegment[]): string {
  return path.map(String).join('\0');
}

function isPrefix(prefix: readonly string[], path: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((seg, i) => seg === path[i]);
}

class ParsedSpecDocument implements SpecDocument {
  readonly overrides: string[] = [];
  private readonly overridden: { path: string[]; source: string }[] = [];

  constructor(
    readonly file: string,
    public data: unknown,
    private readonly places: Map<string, Place>,
  ) {}

  positionOf(path: readonly PathSegment[], at: 'key' | 'value' = 'value'): SourcePosition {
    const segs = path.map(String);
    // The newest --set that covers the path wins: a later `--set a={...}` replaces an earlier `--set a.b=1`.
    for (let i = this.overridden.length - 1; i >= 0; i--) {
      const o = this.overridden[i]!;
      if (isPrefix(o.path, segs)) return { file: o.source, line: 0, col: 0 };
    }
    for (let n = segs.length; n >= 0; n--) {
      const place = this.places.get(segs.slice(0, n).join('\0'));
      // A parent standing in for a missing child: its key line is the better pointer ("teacher:").
      if (place) return { file: this.file, ...(n === segs.length ? place[at] : place.key) };
    }
    return { file: this.file, line: 1, col: 1 };
  }

  markOverridden(path: readonly PathSegment[], source: string): void {
    this.overridden.push({ path: path.map(String), source });
  }
}

/** Walks the YAML node tree recording where each key path's key and value start. */
function collectPlaces(doc: Document, lineCounter: LineCounter): Map<string, Place> {
  const places = new Map<string, Place>();
  const pos = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);
  const start = (node: YamlNode | null | undefined): number | undefined => node?.range?.[0];

  const visit = (node: unknown, path: PathSegment[], keyOffset: number, overwrite: boolean): void => {
    const valueOffset = valueStart(node) ?? keyOffset;
    const key = pathKey(path);
    if (overwrite || !places.has(key)) places.set(key, { key: pos(keyOffset), value: pos(valueOffset) });
    if (isMap(node)) {
      const merges: unknown[] = [];
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const k = pair.key;
        if (isScalar(k) && typeof k.value === 'symbol') {
          merges.push(pair.value);
          continue;
        }
        const name = isScalar(k) ? String(k.value) : String(k);
        const kOffset = isScalar(k) || isMap(k) || isSeq(k) ? (start(k) ?? valueOffset) : valueOffset;
        visit(pair.value, [...path, name], kOffset, true);
      }
      // Keys pulled in by `<<: *base` point into the anchored mapping, where they are written,
      // unless the mapping sets them itself.
      for (const m of merges) {
        const sources = isSeq(m) ? m.items : [m];
        for (const s of sources) {
          const target = isAlias(s) ? s.resolve(doc) : s;
          if (!isMap(target)) continue;
          for (const pair of target.items) {
            if (!isPair(pair) || !isScalar(pair.key) || typeof pair.key.value === 'symbol') continue;
            visit(pair.value, [...path, String(pair.key.value)], start(pair.key) ?? valueOffset, false);
          }
        }
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const off = valueStart(item) ?? valueOffset;
        visit(item, [...path, i], off, true);
      });
    }
    // Aliases are not followed: a problem inside aliased data points at the alias, which is where
    // this path's data was put.
  };

  const valueStart = (node: unknown): number | undefined => {
    if (isScalar(node) && node.value === null && node.source === '') return undefined; // `key:` with nothing after it
    if (isScalar(node) || isMap(node) || isSeq(node) || isAlias(node)) return start(node);
    return undefined;
  };

  visit(doc.contents, [], valueStart(doc.contents) ?? 0, true);
  return places;
}

/** The key whose node starts at `offset`, and where the same key first appears in its mapping. */
function findDuplicate(node: unknown, offset: number): { name: string; firstOffset?: number } | undefined {
  if (isMap(node)) {
    const keyName = (k: unknown): string => (isScalar(k) ? String(k.value) : String(k));
    for (const pair of node.items) {
      const k = pair.key as YamlNode | null;
      if (k?.range?.[0] === offset) {
        const name = keyName(k);
        const first = node.items.find((p) => keyName(p.key) === name);
        return { name, firstOffset: (first?.key as YamlNode | null)?.range?.[0] };
      }
    }
    for (const pair of node.items) {
      const found = findDuplicate(pair.value, offset) ?? findDuplicate(pair.key, offset);
      if (found) return found;
    }
  } else if (isSeq(node)) {
    for (const item of node.items) {
      const found = findDuplicate(item, offset);
      if (found) return found;
    }
  }
  return undefined;
}

const CONFLICT_MARKER = /^(<{7}|>{7})(?: |$)/;

function conflictDiagnostics(file: string, text: string): Diagnostic[] {
  const lines = text.split(/\r?\n/);
  const first = lines.findIndex((l) => CONFLICT_MARKER.test(l));
  if (first < 0) return [];
  const marker = lines[first]!.slice(0, 40);
  return [
    {
      file,
      line: first + 1,
      col: 1,
      path: '',
      message:
        `unresolved git merge conflict: found the marker "${marker}"; ` +
        'resolve the conflict and delete the <<<<<<<, ======= and >>>>>>> lines',
    },
  ];
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

/** Parses YAML 1.2 (and so JSON). Throws SpecError for syntax errors, duplicate keys, alias bombs and conflict markers. */
export function parseSpecText(file: string, text: string): SpecDocument {
  // Conflict markers make the YAML parser report a confusing cascade; the marker is the real problem.
  const conflicts = conflictDiagnostics(file, text);
  if (conflicts.length) throw new SpecError(conflicts, file);

  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    uniqueKeys: true,
    // `<<: *defaults` is how people share settings between stages; YAML 1.2 alone lacks it.
    merge: true,
  });
  const at = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);

  if (doc.errors.length) {
    const diagnostics = doc.errors.map((e): Diagnostic => {
      const { line, col } = at(e.pos[0]);
      let message = firstLine(e.message);
      if (e.code === 'DUPLICATE_KEY') {
        const dup = findDuplicate(doc.contents, e.pos[0]);
        const first = dup?.firstOffset === undefined ? '' : ` (first set on line ${at(dup.firstOffset).line})`;
        message = `duplicate key ${JSON.stringify(dup?.name ?? '?')}${first}: a key may appear only once in a mapping`;
      } else if (e.code === 'MULTIPLE_DOCS') {
        message = 'the file holds more than one YAML document (a "---" line); a pipeline file holds one';
      } else {
        message = `YAML syntax error: ${message}`;
      }
      return { file, line, col, path: '', message };
    });
    throw new SpecError(sortDiagnostics(diagnostics, file), file);
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const bomb = /alias count/i.test(String(err));
    const anchor = /[&*][^\s,\]}]/.exec(text);
    const { line, col } = at(anchor?.index ?? 0);
    const message = bomb
      ? `refused: YAML aliases (*name) expand to too much data (over ${MAX_ALIAS_COUNT} alias uses); ` +
        'this looks like an alias bomb ("billion laughs")'
      : `cannot read YAML: ${err instanceof Error ? err.message : String(err)}`;
    throw new SpecError([{ file, line, col, path: '', message }], file);
  }
  return new ParsedSpecDocument(file, data ?? null, collectPlaces(doc, lineCounter));
}

/** Reads and parses a pipeline file; a missing file is an InputError naming it. */
export async function readSpecFile(file: string): Promise<SpecDocument> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`pipeline file not found: ${file}`, { cause: err });
    if (code === 'EISDIR') throw new InputError(`pipeline file is a directory, not a file: ${file}`, { cause: err });
    throw new InputError(`cannot read pipeline file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseSpecText(file, text);
}
