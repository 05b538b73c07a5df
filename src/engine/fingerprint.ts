import { canonicalJson, sha256 } from '../util/hash.js';
import { TOOL_VERSION, TFJS_VERSION } from '../version.js';

// A stage's fingerprint covers everything that decides its output: its kind and resolved options,
// the fingerprints of the stages it reads, the hashes of the data it reads, the pipeline seed and
// the code (tool and tfjs versions). The backend is left out on purpose: it is an execution choice,
// so a version trained on a GPU machine serves a CPU-only CI job (recorded in the manifest).

export interface FingerprintInputs {
  kind: string;
  config: Record<string, unknown>;
  stages: Record<string, string>;
  data: Record<string, string>;
  /** sha256 of files the stage reads from outside the store, by path. */
  files: Record<string, string>;
  seed: number;
}

export interface Fingerprint {
  fingerprint: string;
  /** One hash per component, to explain a cache miss. */
  details: {
    config: string;
    stages: Record<string, string>;
    data: Record<string, string>;
    files: Record<string, string>;
    seed: number;
    code: string;
  };
}

export function fingerprintStage(inputs: FingerprintInputs): Fingerprint {
  const code = `tfjs-pipeline@${TOOL_VERSION} tfjs@${TFJS_VERSION}`;
  const details = {
    config: sha256(canonicalJson({ kind: inputs.kind, config: inputs.config })),
    stages: inputs.stages,
    data: inputs.data,
    files: inputs.files,
    seed: inputs.seed,
    code,
  };
  return { fingerprint: sha256(canonicalJson(details)), details };
}

/** Why a stage with `current` inputs cannot reuse `previous` (a stored manifest's inputs), in words. */
export function explainDifference(
  current: { details: Fingerprint['details']; config: Record<string, unknown> },
  previous: { details: Fingerprint['details']; config: Record<string, unknown> },
): string[] {
  const reasons: string[] = [];
  const changed = diffPaths(previous.config, current.config);
  if (changed.length) reasons.push(`config changed (${changed.slice(0, 4).join(', ')}${changed.length > 4 ? ', ...' : ''})`);
  const [now, before] = [current.details, previous.details];
  if (!changed.length && now.config !== before.config) reasons.push('stage kind or config changed');
  for (const [name, fp] of Object.entries(now.stages)) {
    if (before.stages[name] !== fp) reasons.push(`input stage "${name}" changed`);
  }
  for (const [name, hash] of Object.entries(now.data)) {
    if (before.data[name] !== hash) reasons.push(`data "${name}" changed`);
  }
  for (const [path, hash] of Object.entries(now.files)) {
    if (before.files?.[path] !== hash) reasons.push(`file ${path} changed`);
  }
  if (before.seed !== now.seed) reasons.push(`seed changed (${before.seed} -> ${now.seed})`);
  if (before.code !== now.code) reasons.push(`code changed (${before.code} -> ${now.code})`);
  return reasons;
}

/** Each leaf that differs between two configs, as "path: old -> new" (values cut at 40 characters). */
export function diffPaths(a: unknown, b: unknown, prefix = ''): string[] {
  if (canonicalJson(a) === canonicalJson(b)) return [];
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffPaths(a[k], b[k], prefix ? `${prefix}.${k}` : k));
  }
  const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v).slice(0, 40));
  return [`${prefix || '(root)'}: ${show(a)} -> ${show(b)}`];
}
