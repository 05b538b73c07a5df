import { cp, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { assertSafeName, type StoredVersion } from './store.js';
import { MANIFEST_FILE, type Manifest } from './manifest.js';
import { fsyncDir } from '../util/fs.js';

// TensorFlow Serving's model layout, the second layout we own (the store's is in store.ts):
//
//   <base>/<modelName>/<N>/   one servable version: a copy of an export stage's stored version
//                             (saved_model.pb, variables/, tfjs-layers/, tfjs-graph/, onnx/,
//                             model-card.json, manifest.json with every file's sha256)
//   <base>/<modelName>/.tmp-* a version being copied; Serving ignores names that are not integers
//
// Serving loads the highest integer, so N only grows: a new export gets max + 1, and an export
// already there (same fingerprint in its manifest.json) is not copied again, so rerunning a cached
// pipeline publishes nothing new. The copy is renamed into place whole, so a server watching the
// folder never sees a partial version.

export const SERVING_DIR = 'serving';

export interface ServingVersion {
  dir: string;
  version: number;
  /** False when this export was already there. */
  created: boolean;
}

async function servingVersions(modelDir: string): Promise<number[]> {
  const names = await readdir(modelDir).catch(() => [] as string[]);
  return names.filter((n) => /^[1-9][0-9]*$/.test(n)).map(Number).sort((a, b) => a - b);
}

async function fingerprintOf(dir: string): Promise<string | undefined> {
  try {
    return (JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as Manifest).fingerprint;
  } catch {
    return undefined;
  }
}

export async function publishServingVersion(base: string, modelName: string, source: StoredVersion): Promise<ServingVersion> {
  assertSafeName('model', modelName);
  const modelDir = join(base, modelName);
  await mkdir(modelDir, { recursive: true });
  const existing = await servingVersions(modelDir);
  for (const version of existing.slice().reverse()) {
    const dir = join(modelDir, String(version));
    if ((await fingerprintOf(dir)) === source.manifest.fingerprint) return { dir, version, created: false };
  }
  const tmp = join(modelDir, `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await cp(source.dir, tmp, { recursive: true });
    let version = (existing.at(-1) ?? 0) + 1;
    // Another run may take the same number between our listing and the rename: take the next one.
    for (;;) {
      const dir = join(modelDir, String(version));
      try {
        await rename(tmp, dir);
        await fsyncDir(modelDir);
        return { dir, version, created: true };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
        version++;
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
