// The one call the CLI needs: read, apply --set, validate, and fail with every problem at once.
import { SpecError } from './diagnostics.js';
import { readSpecFile, type SpecDocument } from './document.js';
import { isPlainObject } from './describe.js';
import { applyOverrides } from './overrides.js';
import { validateAgainstSchema } from './validate.js';

export interface LoadSpecOptions {
  /** JSON Schema the file must satisfy. */
  schema: object;
  /** `--set key.path=value` expressions, applied in order before validation. */
  sets?: string[];
}

/** Reads, overrides and validates a pipeline file; throws InputError / SpecError, else returns the valid document. */
export async function loadSpec(file: string, options: LoadSpecOptions): Promise<SpecDocument> {
  const doc = await readSpecFile(file);
  const properties = (options.schema as { properties?: unknown }).properties;
  applyOverrides(doc, options.sets ?? [], { topLevelKeys: isPlainObject(properties) ? Object.keys(properties) : [] });
  const diagnostics = validateAgainstSchema(doc, options.schema);
  if (diagnostics.length) throw new SpecError(diagnostics, file);
  return doc;
}
