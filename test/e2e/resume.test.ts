import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { createRng } from '../../src/random.js';
import { cli, fixture, removeTempDirs, startCli, tempDir, type RunningCli } from '../helpers.js';

// One seeded run of test/fixtures/digits-resume.yaml, killed and stopped again and again, each
// time resumed by running the same command: at fixed points (half a checkpoint written, just after
// a checkpoint, a version complete but not renamed into place, a version published but its
// checkpoint not yet deleted) and at random moments chosen by a seeded generator (SIGKILL, SIGINT,
// SIGTERM). After every kill no partial version is visible and every checkpoint on disk is whole;
// at the end the weights are those of a run never interrupted, byte for byte.

test.after(removeTempDirs);

const FILE = fixture('digits-resume.yaml');
const SHARD = 'group1-shard1of1.bin';

test('killed at fixed and random points, resumed each time: the weights of an uninterrupted run', async () => {
  const [referenceDir, dir] = [await tempDir(), await tempDir()];
  const args = ['run', FILE, '--store', dir];
  // The reference trains beside the interrupted runs (two cores).
  const reference = cli(['run', FILE, '--store', referenceDir]);
  const store = new LocalArtifactStore(dir);
  const rng = createRng(20261124, 'resume-test kill delays');

  /** No v<N> without a whole manifest and files that match it; every checkpoint reads back whole. */
  async function assertConsistent(after: string): Promise<number[]> {
    const stageDir = join(dir, 'digits-resume', 'net');
    const folders = (await readdir(stageDir).catch(() => [] as string[])).filter((n) => /^v\d+$/.test(n));
    const versions = await store.listVersions('digits-resume', 'net');
    assert.equal(versions.map((v) => `v${v.version}`), folders, `${after}: a version folder without a manifest`);
    for (const v of versions) await store.openVersion('digits-resume', 'net', v.version);
    const root = join(stageDir, '.checkpoints');
    const epochs: number[] = [];
    for (const fingerprint of await readdir(root).catch(() => [] as string[])) {
      const checkpoint = await store.checkpoints('digits-resume', 'net', fingerprint).read('training');
      if (checkpoint) epochs.push(checkpoint.epoch);
    }
    return epochs;
  }

  async function killAt(run: RunningCli, pattern: RegExp, signal: NodeJS.Signals = 'SIGKILL', delayMs = 0) {
    await run.waitFor(pattern);
    if (delayMs) await new Promise((resolve) => setTimeout(resolve, delayMs));
    run.child.kill(signal);
    return run.ended;
  }
  const fault = (point: string) => startCli(args, { TFJS_PIPELINE_FAULT: point });
  const resumedFrom = (run: RunningCli) => Number(/resuming from the checkpoint of epoch (\d+)\/10/.exec(run.output())?.[1] ?? 0);

  // Half of the second checkpoint written: the first stays the one to resume from.
  await killAt(fault('checkpoint-write:2'), /fault point reached/);
  assert.equal(await assertConsistent('a kill mid-checkpoint'), [1]);
  const [fingerprint] = await readdir(join(dir, 'digits-resume', 'net', '.checkpoints'));
  const files = await readdir(store.checkpoints('digits-resume', 'net', fingerprint).dir);
  assert.ok(files.some((f) => /^training\.ckpt\.tmp-/.test(f)), `no half-written checkpoint beside it: ${files}`);

  // Between epochs, just after a checkpoint.
  const between = fault('after-checkpoint:2');
  await killAt(between, /fault point reached/);
  assert.is(resumedFrom(between), 1);
  assert.equal(await assertConsistent('a kill between epochs'), [3]);

  // At random moments after the run resumed: in an epoch, in validation, in a checkpoint write...
  let last = 3;
  for (const signal of ['SIGKILL', 'SIGINT', 'SIGTERM'] as const) {
    const run = startCli(args);
    const delay = Math.round(rng() * 500);
    const ended = await killAt(run, /resuming from the checkpoint/, signal, delay);
    assert.is(resumedFrom(run), last, `${signal} after ${delay} ms: resumed from the newest checkpoint`);
    const epochs = await assertConsistent(`${signal} after ${delay} ms`);
    assert.is(epochs.length, 1);
    if (signal !== 'SIGKILL') {
      // Stopped at the next batch, cleanly: exit 130, and the checkpoint to resume from is named.
      assert.is(ended.code, 130, run.output());
      assert.match(
        run.output(),
        `error: interrupted during stage "net" after epoch ${epochs[0]}/10 (training): nothing of it was published, its checkpoint is kept; ` +
          'run the same command again to resume from it (--no-resume starts over)',
      );
    }
    last = epochs[0];
  }

  // A version complete in .tmp, not yet renamed into place: invisible.
  await killAt(fault('before-publish'), /fault point reached/);
  assert.equal(await assertConsistent('a kill before publishing'), [10]);
  assert.equal(await store.listVersions('digits-resume', 'net'), []);

  // Published, its checkpoint not yet deleted: the next run reuses the version and drops it.
  await killAt(fault('after-publish'), /fault point reached/);
  assert.equal(await assertConsistent('a kill after publishing'), [10]);
  const final = await cli(args);
  assert.is(final.code, 0, final.stderr);
  assert.match(final.stdout, 'net (train): reused v1');
  assert.equal(await assertConsistent('the last run'), []);

  const done = await reference;
  assert.is(done.code, 0, done.stderr);
  const [expected, resumed] = await Promise.all([
    new LocalArtifactStore(referenceDir).openVersion('digits-resume', 'net'),
    store.openVersion('digits-resume', 'net'),
  ]);
  assert.is(resumed.manifest.files[SHARD].sha256, expected.manifest.files[SHARD].sha256);
  assert.is(resumed.manifest.metrics.best_epoch, expected.manifest.metrics.best_epoch);
  assert.equal(resumed.manifest.resumedFromEpoch, { training: 10 });
  const runs = await store.listRuns('digits-resume');
  assert.equal(runs.filter((r) => r.status === 'interrupted').length, 2, 'SIGINT and SIGTERM runs recorded as interrupted');
});

test.run();
