import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';

// Compiled to dist/test/data/, so the repository root is three folders up.
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const DATA_DIR = join(ROOT, 'data');
export const FASHION_DIR = '/usr/share/datasets/fashion-mnist';

const dirs: string[] = [];

export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tfjs-pipeline-data-'));
  dirs.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Awaits `fn`, which must fail with an InputError whose message contains every pattern. */
export async function expectInputError(fn: () => Promise<unknown>, patterns: (string | RegExp)[]): Promise<string> {
  let error: unknown;
  try {
    await fn();
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof InputError, `expected an InputError, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
  const message = (error as InputError).message;
  for (const p of patterns) {
    const ok = typeof p === 'string' ? message.includes(p) : p.test(message);
    assert.ok(ok, `message lacks ${String(p)}:\n${message}`);
  }
  return message;
}
