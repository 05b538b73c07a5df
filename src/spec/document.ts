// Parses a pipeline file into plain data plus a map from key paths to line:col, so every later
// check (schema, --set, stage builders) can point at the exact place in the user's file.
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
import { FileLimitError, readFileLimited } from '../util/fs.js';
import { decodeTextFile } from '../util/text.js';
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

/** Largest pipeline file read: real ones are a few KB; the YAML parser needs seconds and much memory per 10 MB. */
export const MAX_SPEC_BYTES = 1024 * 1024;

/** Deepest nesting of mappings and lists: a real file needs about 7 (stages.x.model.layers.0.kernelSize.0). */
export const MAX_NESTING = 64;

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

/**
 * The first line of a YAML parser message, made short: the parser quotes the offending token, and
 * an unexpected token can be the rest of the file (JSON-escaped, so on that one line).
 */
export function yamlErrorText(message: string): string {
  const line = message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const shortened = line.replace(/"((?:[^"\\]|\\.){40})(?:[^"\\]|\\.)+"/g, '"$1…"');
  return shortened.length > 300 ? `${shortened.slice(0, 300)}…` : shortened;
}

/** Parses YAML 1.2 (and so JSON). Throws SpecError for syntax errors, duplicate keys, alias bombs and conflict markers. */
export function parseSpecText(file: string, text: string): SpecDocument {
  // Conflict markers make the YAML parser report a confusing cascade; the marker is the real problem.
  const conflicts = conflictDiagnostics(file, text);
  if (conflicts.length) throw new SpecError(conflicts, file);
  if (text.length > MAX_SPEC_BYTES / 4 && Buffer.byteLength(text) > MAX_SPEC_BYTES) {
    throw new SpecError([{ file, line: 1, col: 1, path: '', message: tooBigMessage(Buffer.byteLength(text)) }], file);
  }
  const control = controlCharacterDiagnostic(file, text);
  if (control) throw new SpecError([control], file);
  const flowDepth = deepFlowOffset(text);
  if (flowDepth !== undefined) {
    const before = text.slice(0, flowDepth);
    const line = before.split('\n').length;
    throw new SpecError([{ file, line, col: flowDepth - before.lastIndexOf('\n'), path: '', message: nestingMessage() }], file);
  }

  const lineCounter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, {
      lineCounter,
      prettyErrors: false,
      uniqueKeys: true,
      // `<<: *defaults` is how people share settings between stages; YAML 1.2 alone lacks it.
      merge: true,
    });
  } catch (err) {
    if (err instanceof RangeError) throw new SpecError([{ file, line: 1, col: 1, path: '', message: nestingMessage() }], file);
    throw err;
  }
  const at = (offset: number): { line: number; col: number } => lineCounter.linePos(offset);

  // The parser recurses once per level and reports a blown stack as a syntax error at some line;
  // the real problem is the nesting.
  const overflow = doc.errors.find((e) => e instanceof Error && /call stack/i.test(e.message));
  if (overflow) throw new SpecError([{ file, ...at(overflow.pos[0]), path: '', message: nestingMessage() }], file);
  if (doc.errors.length) {
    const diagnostics = doc.errors.map((e): Diagnostic => {
      const { line, col } = at(e.pos[0]);
      let message = yamlErrorText(e.message);
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

  const problem = structureProblem(doc.contents);
  if (problem) throw new SpecError([{ file, ...at(problem.offset), path: '', message: problem.message }], file);

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    // Aliases nest the anchored data where they stand, so the data can be deeper than the text.
    if (nestingOf(data) > MAX_NESTING) {
      const anchor = /[&*][^\s,\]}]/.exec(text);
      throw new SpecError([{ file, ...at(anchor?.index ?? 0), path: '', message: nestingMessage() }], file);
    }
  } catch (err) {
    if (err instanceof SpecError) throw err;
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
  let bytes: Buffer;
  try {
    bytes = await readFileLimited(file, MAX_SPEC_BYTES);
  } catch (err) {
    if (err instanceof FileLimitError) {
      if (err.reason === 'too-big') {
        throw new SpecError([{ file, line: 1, col: 1, path: '', message: tooBigMessage(Number(err.found)) }], file);
      }
      if (err.found === 'a folder') throw new InputError(`pipeline file is a directory, not a file: ${file}`, { cause: err });
      throw new InputError(`pipeline file ${file} is ${err.found}, not a regular file: name the YAML file itself`, { cause: err });
    }
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError(`pipeline file not found: ${file}`, { cause: err });
    throw new InputError(`cannot read pipeline file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const decoded = decodeTextFile(bytes);
  if ('problem' in decoded) {
    const { line, col, message } = decoded.problem;
    throw new SpecError([{ file, line, col, path: '', message: `not a YAML text file: ${message}` }], file);
  }
  return parseSpecText(file, decoded.text.toString('utf8'));
}

function tooBigMessage(bytes: number): string {
  return (
    `refused: the file is ${bytes.toLocaleString('en-US')} bytes, over the ${MAX_SPEC_BYTES.toLocaleString('en-US')}-byte limit ` +
    'for pipeline files (real ones are a few KB); check that this is the pipeline file'
  );
}

function nestingMessage(): string {
  return (
    `refused: mappings and lists nest more than ${MAX_NESTING} levels deep (a pipeline file needs about 7); ` +
    'this looks like a generated or hostile file'
  );
}

// YAML allows tab, line feed and carriage return, not other C0 controls or DEL; the parser would
// otherwise keep them inside names and paths.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;

function controlCharacterDiagnostic(file: string, text: string): Diagnostic | undefined {
  const m = CONTROL.exec(text);
  if (!m) return undefined;
  const before = text.slice(0, m.index);
  const line = before.split('\n').length;
  const col = m.index - before.lastIndexOf('\n');
  const code = `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  return {
    file,
    line,
    col,
    path: '',
    message:
      `control character ${code} in the text: a pipeline file is UTF-8 text without control characters ` +
      '(a binary file, or UTF-16 without a byte-order mark?); remove it, or write it as an escape such as "\\t" inside double quotes',
  };
}

/**
 * Where `[` and `{` first nest deeper than MAX_NESTING, skipping quoted text and comments: the
 * parser takes seconds over a megabyte of brackets before its stack gives out. Approximate: an
 * apostrophe inside a plain word hides what follows (the parser and structureProblem then decide), and
 * brackets in plain or block text count, so only text with over 64 unclosed ones is refused.
 */
function deepFlowOffset(text: string): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return i;
    } else if (c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    } else if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === "'") {
      for (i++; i < text.length && text[i] !== "'"; i++);
    } else if (c === '#' && (i === 0 || /\s/.test(text[i - 1]))) {
      while (i < text.length && text[i] !== '\n') i++;
    }
  }
  return undefined;
}

/**
 * The first node nested deeper than MAX_NESTING, or used as a key while being a mapping or a
 * list (`? [a, b]: x`, which would become the key "a,b"), walked without recursion.
 */
export function structureProblem(root: unknown): { offset: number; message: string } | undefined {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth >= MAX_NESTING) return { offset: (node as YamlNode).range?.[0] ?? 0, message: nestingMessage() };
    for (const item of node.items as unknown[]) {
      if (isPair(item)) {
        // `!!binary` and other tags can make even a plain-looking key a byte array, an alias a mapping.
        const key = item.key;
        if (isMap(key) || isSeq(key) || isAlias(key) || (isScalar(key) && typeof key.value === 'object' && key.value !== null)) {
          return { offset: (key as YamlNode).range?.[0] ?? 0, message: 'a key must be a plain name, not a mapping, a list, an alias or a tagged value' };
        }
        stack.push([item.value, depth + 1]);
      } else {
        stack.push([item, depth + 1]);
      }
    }
  }
  return undefined;
}

/** Depth of plain data (0 for a scalar), walked without recursion; stops counting past MAX_NESTING. */
export function nestingOf(data: unknown): number {
  let max = 0;
  // Aliases share one object between places, so each object is walked again only when met deeper.
  const seenAt = new Map<object, number>();
  const stack: [unknown, number][] = [[data, 0]];
  while (stack.length) {
    const [value, depth] = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if ((seenAt.get(value) ?? -1) >= depth) continue;
    seenAt.set(value, depth);
    max = Math.max(max, depth + 1);
    if (max > MAX_NESTING) return max;
    for (const child of Object.values(value)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return max;
}
