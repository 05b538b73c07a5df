import { resolve } from 'node:path';
import { InputError } from '../errors.js';
import { LocalArtifactStore, type ArtifactStore } from './store.js';

// Which store a command uses: `--store`, else the pipeline file's `store:`, else the folder
// `artifacts`. A folder is a LocalArtifactStore; s3://bucket/prefix is that remote with the local
// folder `--cache` (default `artifacts`) in front of it as its cache (cached-store.ts).

export type StoreSpec =
  | { kind: 'local'; path: string }
  | { kind: 's3'; url: string; bucket: string; prefix: string };

export const DEFAULT_STORE = 'artifacts';

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
/** S3's rules for bucket names: 3 to 63 of a-z 0-9 . -, a letter or digit at each end. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_PART = /^[A-Za-z0-9_.-]+$/;

/** What is wrong with a store spec, in words for the person who wrote it; undefined when nothing is. */
export function storeSpecProblem(text: string): string | undefined {
  if (!text.trim()) return 'the store is empty: give a folder or s3://bucket/prefix';
  const scheme = SCHEME.exec(text)?.[1];
  if (scheme === undefined) return undefined;
  if (scheme !== 's3') return `"${text}": ${scheme}:// stores are not supported: give a folder or s3://bucket/prefix`;
  const rest = text.slice('s3://'.length);
  if (/[?#]/.test(rest)) return `"${text}": an s3:// store has no query or fragment: write s3://bucket/prefix`;
  const [bucket, ...parts] = rest.replace(/\/$/, '').split('/');
  if (!BUCKET.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    return (
      `"${text}": ${bucket ? `"${bucket}" is not an S3 bucket name` : 'no bucket'} ` +
      '(3 to 63 lowercase letters, digits, "." and "-", a letter or digit at each end): write s3://bucket/prefix'
    );
  }
  const bad = parts.find((p) => !PREFIX_PART.test(p) || p === '.' || p === '..');
  if (bad !== undefined) {
    return `"${text}": ${bad ? `"${bad}"` : 'an empty part'} in the prefix: use letters, digits, "_", "-" and "." between single slashes`;
  }
  return undefined;
}

/** A folder (relative to `baseDir`) or s3://bucket/prefix; bad input names `where` and the fix. */
export function parseStoreSpec(text: string, where: string, baseDir = process.cwd()): StoreSpec {
  const problem = storeSpecProblem(text);
  if (problem) throw new InputError(`${where}: ${problem}`);
  if (!text.startsWith('s3://')) return { kind: 'local', path: resolve(baseDir, text) };
  const [bucket, ...parts] = text.slice('s3://'.length).replace(/\/$/, '').split('/');
  const prefix = parts.join('/');
  return { kind: 's3', bucket, prefix, url: `s3://${bucket}${prefix ? `/${prefix}` : ''}` };
}

/** `--store` when given, else the pipeline file's `store:`, else the folder `artifacts`. */
export function chooseStoreSpec(cliStore: string | undefined, fileStore?: StoreSpec): StoreSpec {
  if (cliStore !== undefined) return parseStoreSpec(cliStore, '--store');
  return fileStore ?? parseStoreSpec(DEFAULT_STORE, 'the default store');
}

/** The folder a command reads and writes locally: the store itself, or the cache of a remote one. */
export function localStoreRoot(spec: StoreSpec, cache = DEFAULT_STORE): string {
  return spec.kind === 'local' ? spec.path : resolve(cache);
}

export async function openArtifactStore(spec: StoreSpec, cache = DEFAULT_STORE): Promise<ArtifactStore> {
  if (spec.kind === 'local') return new LocalArtifactStore(spec.path);
  // Loaded only for a remote: the AWS SDK adds a few hundred ms to a command's start.
  const [{ S3Remote }, { CachedArtifactStore }] = await Promise.all([import('./s3-remote.js'), import('./cached-store.js')]);
  return new CachedArtifactStore(new LocalArtifactStore(localStoreRoot(spec, cache)), new S3Remote(spec));
}
