import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

// `pipeline diff`: two runs of the iris pipeline that differ in one override.

test.after(removeTempDirs);

const store = await tempDir();
for (const epochs of [2, 5]) {
  const run = await cli(['run', fixture('iris.yaml'), '--store', store, '--quiet', '--set', `net.epochs=${epochs}`]);
  assert.is(run.code, 0, run.stderr);
}

test('shows the changed override, the resolved config change, versions and metric deltas', async () => {
  const result = await cli(['diff', 'latest~1', 'latest', '--pipeline', 'iris', '--store', store]);
  assert.is(result.code, 0, result.stderr);
  const out = result.stdout;
  assert.match(out, '~ net.epochs: 2 -> 5');
  assert.match(out, 'net (train): ran v1 -> ran v2');
  assert.match(out, 'config epochs: 2 -> 5');
  assert.match(out, 'check (evaluate): ran v1 -> ran v2');
  assert.match(out, 'input stage "net" changed');
  // A metric row per headline metric: A, B and B - A; the loss surely moved with 3 more epochs.
  const row = out.split('\n').find((l) => /^\s+net\s+test_loss\s/.test(l));
  assert.ok(row, out);
  const [, a, b, delta] = /test_loss\s+([\d.]+)\s+([\d.]+)\s+([+-][\d.]+)/.exec(row!) ?? [];
  assert.ok(delta, row);
  assert.ok(Math.abs(Number(b) - Number(a) - Number(delta)) < 2e-4, row);
});

test('run ids by prefix, and errors that say what exists', async () => {
  const runs = (await cli(['runs', 'iris', '--store', store])).stdout.split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/)[0]);
  assert.is(runs.length, 2);
  const same = await cli(['diff', runs[0], runs[0].slice(0, 20), '--store', store]);
  assert.is(same.code, 0, same.stderr);
  assert.match(same.stdout, 'overrides (--set): same');
  assert.match(same.stdout, 'net (train): ran v1 -> ran v1 (same version)');
  assert.match(same.stdout, /net\s+test_accuracy\s+[\d.]+\s+[\d.]+\s+=/);
  const missing = await cli(['diff', 'nope', 'latest', '--store', store]);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'no run "nope"');
  assert.match(missing.stderr, runs[1]);
  const tooFar = await cli(['diff', 'latest~5', 'latest', '--store', store]);
  assert.is(tooFar.code, 2);
  assert.match(tooFar.stderr, 'only 2 runs are recorded');
});

test.run();
