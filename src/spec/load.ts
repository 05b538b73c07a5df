// The one call the CLI needs: read, apply --set, validate, and fail with every problem at once.
import { SpecError, formatPath, sortDiagnostics, type Diagnostic, type PathSegment } from './diagnostics.js';
import { parseSpecText, readSpecFile, type SpecDocument } from './document.js';
import { isPlainObject } from './describe.js';
import { applyOverrides } from './overrides.js';
import { validateAgainstSchema } from './validate.js';

export interface LoadSpecOptions {
  /** JSON Schema the file must satisfy. */
  schema: object;
  /** `--set key.path=value` expressions, applied in order before validation. */
  sets?: string[];
  /** The file's content, when it came from elsewhere (a queue job): `file` then only names it. */
  text?: string;
}

/** Reads, overrides and validates a pipeline file; throws InputError / SpecError, else returns the valid document. */
export async function loadSpec(file: string, options: LoadSpecOptions): Promise<SpecDocument> {
  const doc = options.text === undefined ? await readSpecFile(file) : parseSpecText(file, options.text);
  const properties = (options.schema as { properties?: unknown }).properties;
  applyOverrides(doc, options.sets ?? [], { topLevelKeys: isPlainObject(properties) ? Object.keys(properties) : [] });
  const forbidden = forbiddenValues(doc);
  // The schema's own complaint about such a value ("expected a number > 0, found NaN") says less.
  const taken = new Set(forbidden.map((d) => d.path));
  const diagnostics = [...forbidden, ...validateAgainstSchema(doc, options.schema).filter((d) => !taken.has(d.path))];
  if (diagnostics.length) throw new SpecError(sortDiagnostics(diagnostics, file, doc.overrides.map((e) => `--set ${e}`)), file);
  return doc;
}

/**
 * Values YAML can write but no pipeline option may hold, whatever the schema says: .inf and .nan
 * (JSON Schema's "number" admits them, and a learning rate of infinity trains to NaN), and strings
 * with NUL characters (a path with one is refused by the file system with a TypeError).
 */
function forbiddenValues(doc: SpecDocument): Diagnostic[] {
  const found: Diagnostic[] = [];
  const stack: [unknown, PathSegment[]][] = [[doc.data, []]];
  // An alias puts one object in several places; walking it once keeps a bomb-sized document cheap.
  const seen = new Set<object>();
  while (stack.length && found.length < 50) {
    const [value, path] = stack.pop()!;
    if (typeof value === 'object' && value !== null) {
      if (seen.has(value)) continue;
      seen.add(value);
    }
    let message: string | undefined;
    if (typeof value === 'number' && !Number.isFinite(value)) {
      message = `expected a finite number, found ${value} (YAML's ${Number.isNaN(value) ? '.nan' : value > 0 ? '.inf' : '-.inf'}); write a number`;
    } else if (typeof value === 'string' && value.includes('\0')) {
      message = 'a string may not contain a NUL character ("\\0"); remove it';
    } else if (Array.isArray(value)) {
      value.forEach((v, i) => stack.push([v, [...path, i]]));
    } else if (isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) stack.push([v, [...path, k]]);
    }
    if (message) found.push({ ...doc.positionOf(path), path: formatPath(path), message });
  }
  return found;
}
