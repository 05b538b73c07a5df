// One shape for every problem found in a pipeline file, whether YAML syntax, a bad --set or a
// schema violation, so the CLI prints them all the same way: file:line:col: key.path: message.
import { InputError } from '../errors.js';

/** A problem at one place. line/col are 1-based; line 0 means "no line" (e.g. a --set argument). */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  path: string;
  message: string;
}

/** One step of a key path: a mapping key or a list index. */
export type PathSegment = string | number;

/** Where a value came from: a line in the pipeline file, or (line 0) a `--set` argument. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/** How many diagnostics a SpecError message spells out; a thousand lines help nobody. */
const MAX_LISTED = 50;

/** `stages.teacher.epochs`, `model.layers.2.units`; odd keys are quoted so the path stays readable. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') {
      out += out ? `.${seg}` : String(seg);
    } else if (/^[A-Za-z0-9_$-]+$/.test(seg)) {
      out += out ? `.${seg}` : seg;
    } else {
      out += `[${JSON.stringify(seg)}]`;
    }
  }
  return out;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line > 0 ? `${d.file}:${d.line}:${d.col}` : d.file;
  return d.path ? `${where}: ${d.path}: ${d.message}` : `${where}: ${d.message}`;
}

function problems(n: number): string {
  return n === 1 ? '1 problem' : `${n} problems`;
}

export class SpecError extends InputError {
  readonly diagnostics: Diagnostic[];
  /** The file the problems were found in, for the count line (`--set` for bad --set arguments). */
  readonly file: string;

  constructor(diagnostics: Diagnostic[], file?: string) {
    const subject = file ?? diagnostics[0]?.file ?? 'pipeline file';
    const lines = diagnostics.slice(0, MAX_LISTED).map(formatDiagnostic);
    if (diagnostics.length > MAX_LISTED) lines.push(`... and ${diagnostics.length - MAX_LISTED} more`);
    lines.push(`${problems(diagnostics.length)} in ${subject}`);
    super(lines.join('\n'), { code: 'E_SPEC' });
    this.name = 'SpecError';
    this.diagnostics = diagnostics;
    this.file = subject;
  }
}

/**
 * File diagnostics first, in reading order, then the others (e.g. from --set) in the order of
 * `laterFiles`; identical ones once.
 */
export function sortDiagnostics(diagnostics: readonly Diagnostic[], mainFile: string, laterFiles: readonly string[] = []): Diagnostic[] {
  const rank = (file: string): number => {
    if (file === mainFile) return 0;
    const i = laterFiles.indexOf(file);
    return 1 + (i < 0 ? laterFiles.length : i);
  };
  const seen = new Set<string>();
  const unique = diagnostics.filter((d) => {
    const key = `${d.file}\0${d.line}\0${d.col}\0${d.path}\0${d.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return unique.sort(
    (a, b) =>
      rank(a.file) - rank(b.file) ||
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) ||
      a.line - b.line ||
      a.col - b.col ||
      (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
}
