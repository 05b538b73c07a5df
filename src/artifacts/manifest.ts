// The records the store keeps. Field names are part of the on-disk format: bump schemaVersion
// when one changes meaning.

export const MANIFEST_FILE = 'manifest.json';

export interface FileDigest {
  sha256: string;
  bytes: number;
}

export interface InputRef {
  stage: string;
  version: number;
  fingerprint: string;
}

export interface DataRef {
  hash: string;
  sources: { path: string; sha256: string; bytes: number }[];
}

/** What the engine knows about a stage output before the store lays it down. */
export interface ManifestDraft {
  kind: string;
  fingerprint: string;
  /** The components of the fingerprint, so a later miss can say what changed. */
  fingerprintDetails: {
    config: string;
    stages: Record<string, string>;
    data: Record<string, string>;
    files: Record<string, string>;
    seed: number;
    code: string;
  };
  /** The stage's options with defaults filled in, as used. */
  config: Record<string, unknown>;
  inputs: { stages: Record<string, InputRef>; data: Record<string, DataRef> };
  seed: number;
  backend: string;
  libraries: Record<string, string>;
  timings: { startedAt: string; finishedAt: string; durationMs: number };
  runId: string;
  /** Headline metrics (e.g. test accuracy), also in metrics.json. */
  metrics: Record<string, unknown>;
  /** Set when training resumed from an interrupted run's checkpoints: the epoch each loop resumed from. */
  resumedFromEpoch?: Record<string, number>;
}

export interface Manifest extends ManifestDraft {
  schemaVersion: 1;
  pipeline: string;
  stage: string;
  version: number;
  /** sha256 and size of every file of the version except the manifest itself. */
  files: Record<string, FileDigest>;
}

/** A manifest's bytes as stored, locally and on a remote alike. */
export function serializeManifest(manifest: Manifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/**
 * Whether two stored versions hold the same output: the same fingerprint and the same bytes in every
 * file. Their numbers may differ: each store numbers the versions it receives.
 */
export function sameOutput(a: Manifest, b: Manifest): boolean {
  const files = Object.keys(a.files);
  return (
    a.fingerprint === b.fingerprint &&
    files.length === Object.keys(b.files).length &&
    files.every((f) => b.files[f]?.sha256 === a.files[f].sha256 && b.files[f].bytes === a.files[f].bytes)
  );
}

export type StageRunStatus = 'ran' | 'reused' | 'failed' | 'skipped' | 'pending';

export interface StageRunRecord {
  stage: string;
  kind: string;
  status: StageRunStatus;
  fingerprint?: string;
  version?: number;
  durationMs?: number;
  metrics?: Record<string, unknown>;
  error?: string;
  /** Why it ran or was reused, e.g. "no stored version with this fingerprint". */
  reason?: string;
  /** Where the kind's publish step put the version outside the store (export: the serving folder). */
  published?: string;
  /** The epoch each training loop of the stage resumed from, when an interrupted run left checkpoints. */
  resumedFromEpoch?: Record<string, number>;
}

export interface RunRecord {
  schemaVersion: 1;
  id: string;
  pipeline: string;
  file: string;
  status: 'running' | 'succeeded' | 'failed' | 'interrupted';
  startedAt: string;
  finishedAt?: string;
  durationMs?: number;
  seed: number;
  backend: string;
  /** `--set` expressions as given on the command line. */
  overrides: string[];
  force: boolean;
  /** `--only`: the stages this run was limited to (its record lists them and their inputs). */
  only?: string[];
  /** The id of the `pipeline sweep` this run is one of. */
  sweep?: string;
  stages: StageRunRecord[];
  error?: string;
  host: string;
  pid: number;
}
