import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

test.after(removeTempDirs);

async function weightsHash(store: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(store, 'iris', 'net', 'v1', 'manifest.json'), 'utf8'));
  assert.is(manifest.backend, 'wasm');
  return manifest.files['group1-shard1of1.bin'].sha256;
}

test('a seeded run on the wasm backend (auto’s pick on a CPU) reproduces bit for bit', async () => {
  const [a, b] = [await tempDir(), await tempDir()];
  for (const store of [a, b]) {
    const run = await cli(['run', fixture('iris.yaml'), '--store', store, '--backend', 'wasm', '--set', 'net.epochs=5']);
    assert.is(run.code, 0, run.stderr);
  }
  assert.is(await weightsHash(a), await weightsHash(b));
});

test.run();
