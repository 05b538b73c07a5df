import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
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

test('two runs of one file on one store at once both succeed: each stage is computed once, one version each', async () => {
  const store = await tempDir();
  const [a, b] = await Promise.all([0, 1].map(() => cli(['run', fixture('iris.yaml'), '--store', store, '--log-format', 'json'])));
  assert.is(a.code, 0, a.stderr);
  assert.is(b.code, 0, b.stderr);
  for (const stage of ['net', 'check']) assert.equal(await readdir(join(store, 'iris', stage)), ['v1'], stage);
  const records = await new LocalArtifactStore(store).listRuns('iris');
  assert.is(records.length, 2);
  for (const stage of ['net', 'check']) {
    const statuses = records.map((r) => r.stages.find((s) => s.stage === stage)!.status).sort();
    assert.equal(statuses, ['ran', 'reused'], `${stage}: ${statuses}`);
  }
});

test('gc while a run is in flight skips the pipeline, naming the run; once it is gone, gc proceeds', async () => {
  const store = await tempDir();
  const holder = startCli(['run', fixture('iris.yaml'), '--store', store], { TFJS_PIPELINE_FAULT: 'before-publish' });
  await holder.waitFor(/fault point reached/);
  const skipped = await cli(['gc', '--keep', '0', '--store', store]);
  holder.child.kill('SIGKILL');
  await holder.ended;
  assert.is(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stderr, new RegExp(`iris: skipped, nothing removed: another pipeline run \\(run \\S+, pid ${holder.child.pid} `));
  const after = await cli(['gc', '--keep', '0', '--store', store]);
  assert.is(after.code, 0, after.stderr);
  assert.not.match(after.stderr, 'skipped');
  assert.match(after.stdout, '(left by a crashed write)');
});

test('--only with an input missing exits 2 naming it and the command that makes it; that command then works', async () => {
  const store = await tempDir();
  const missing = await cli(['run', fixture('iris.yaml'), '--store', store, '--only', 'check']);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'stage "net" (read by "check") has no version with fingerprint');
  const command = /run `pipeline (run .*?)`/.exec(missing.stderr)?.[1];
  assert.ok(command, missing.stderr);
  const made = await cli(command.split(' '));
  assert.is(made.code, 0, made.stderr);
  const only = await cli(['run', fixture('iris.yaml'), '--store', store, '--only', 'check']);
  assert.is(only.code, 0, only.stderr);
  assert.match(only.stdout, 'net (train): reused v1');
  assert.match(only.stdout, 'check: v1');
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
