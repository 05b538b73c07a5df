import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

test.after(removeTempDirs);

async function weightsHash(store: string, pipeline: string, stage: string, backend: string): Promise<string> {
  const manifest = JSON.parse(await readFile(join(store, pipeline, stage, 'v1', 'manifest.json'), 'utf8'));
  assert.is(manifest.backend, backend);
  return manifest.files['group1-shard1of1.bin'].sha256;
}

async function runTwice(args: string[], pipeline: string, stage: string, backend: string): Promise<[string, string]> {
  const stores = [await tempDir(), await tempDir()];
  for (const store of stores) {
    const run = await cli(['run', ...args, '--store', store, '--backend', backend]);
    assert.is(run.code, 0, run.stderr);
  }
  return [await weightsHash(stores[0], pipeline, stage, backend), await weightsHash(stores[1], pipeline, stage, backend)];
}

test('a seeded run on the wasm backend reproduces bit for bit', async () => {
  const [a, b] = await runTwice([fixture('iris.yaml'), '--set', 'net.epochs=5'], 'iris', 'net', 'wasm');
  assert.is(a, b);
});

test('a seeded CNN run on the onnxruntime backend (auto’s pick on a CPU) reproduces bit for bit', async () => {
  // MLAS splits a product among its threads the same way every time: no order-dependent sums.
  const [a, b] = await runTwice([fixture('fashion-cnn.yaml')], 'fashion-cnn', 'cnn', 'onnxruntime');
  assert.is(a, b);
});

test.run();
