import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, fixture, removeTempDirs, startCli, tempDir } from '../helpers.js';

test.after(removeTempDirs);

test('quickstart: trains, reaches its accuracy floor on the test split, then is fully cached', async () => {
  const store = await tempDir();
  const first = await cli(['run', 'pipelines/quickstart.yaml', '--store', store]);
  assert.is(first.code, 0, first.stderr);
  assert.match(first.stdout, /Epoch 1\/30 - [\d.]+s - loss: [\d.]+ - accuracy: [\d.]+ - val_loss/);
  const metrics = JSON.parse(await readFile(join(store, 'quickstart', 'test-report', 'v1', 'metrics.json'), 'utf8'));
  assert.ok(metrics.accuracy >= 0.95, `quickstart test accuracy ${metrics.accuracy} < 0.95`);
  assert.is(metrics.samples, 359);
  const second = await cli(['run', 'pipelines/quickstart.yaml', '--store', store]);
  assert.is(second.code, 0, second.stderr);
  assert.match(second.stdout, 'digits-mlp (train): reused v1');
  assert.match(second.stdout, '3 reused');
  assert.match(second.stdout, 'serving version 1 is this export already');
  const runs = await cli(['runs', '--store', store]);
  assert.match(runs.stdout, /succeeded .*digits-mlp:ran@v1/);
  const show = await cli(['show', 'digits-mlp', '--store', store]);
  assert.is(show.code, 0, show.stderr);
  assert.match(show.stdout, 'data digits');
  assert.match(show.stdout, 'group1-shard1of1.bin');
});

test('SIGKILL while a version is being written leaves no visible version; the next run succeeds', async () => {
  const store = await tempDir();
  const run = startCli(['run', fixture('iris.yaml'), '--store', store], { TFJS_PIPELINE_FAULT: 'before-publish' });
  await run.waitFor(/fault point reached/);
  run.child.kill('SIGKILL');
  await run.ended;
  const stageDir = join(store, 'iris', 'net');
  const entries = await readdir(stageDir);
  assert.not.ok(entries.some((e) => /^v\d+$/.test(e)), `a version appeared: ${entries}`);
  const next = await cli(['run', fixture('iris.yaml'), '--store', store]);
  assert.is(next.code, 0, next.stderr);
  assert.match(next.stdout, 'net: v1');
  assert.equal((await readdir(stageDir)).sort(), ['v1']);
});

test('a second run while one holds the lock is refused with a clear message', async () => {
  const store = await tempDir();
  const holder = startCli(['run', fixture('iris.yaml'), '--store', store], { TFJS_PIPELINE_FAULT: 'before-publish' });
  await holder.waitFor(/fault point reached/);
  const second = await cli(['run', fixture('iris.yaml'), '--store', store]);
  holder.child.kill('SIGKILL');
  assert.is(second.code, 2);
  assert.match(second.stderr, /another pipeline run \(pid \d+/);
});

test('an explicit backend that cannot load fails with exit 2 and says why (no silent cpu fallback)', async () => {
  const store = await tempDir();
  const result = await cli(['run', fixture('iris.yaml'), '--store', store, '--backend', 'tensorflow-gpu']);
  assert.is(result.code, 2);
  assert.match(result.stderr, 'backend "tensorflow-gpu" cannot be used on this machine');
  assert.match(result.stderr, '@tensorflow/tfjs-node-gpu');
});

test('a missing pipeline file and bad usage exit 2', async () => {
  const missing = await cli(['run', 'pipelines/nope.yaml']);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'pipelines/nope.yaml');
  const usage = await cli(['runn']);
  assert.is(usage.code, 2);
});

test.run();
