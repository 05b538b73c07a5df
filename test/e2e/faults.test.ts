import { execFileSync } from 'node:child_process';
import { readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

// Faults a run meets through the CLI: training that diverges, a disk that fills up, a store that
// is read-only or not a folder. Each must end with a clear error that names the place and the fix,
// the right exit code, and the versions already stored intact.

const IRIS = fixture('iris.yaml');
const mounts: string[] = [];

test.after(async () => {
  for (const dir of mounts.splice(0)) execFileSync('umount', [dir]);
  await removeTempDirs();
});

/** A new tmpfs of `size` (a real, small file system), or undefined where this process may not mount. */
async function tmpfs(size: string): Promise<string | undefined> {
  const dir = await tempDir();
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    console.log(`skipped: cannot mount a tmpfs here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()}); needs root`);
    return undefined;
  }
  mounts.push(dir);
  return dir;
}

/** Every stored version of iris's stages, checked against its manifest. */
async function storedVersions(store: string): Promise<string[]> {
  const s = new LocalArtifactStore(store);
  const found: string[] = [];
  for (const stage of ['net', 'check']) {
    for (const v of await s.listVersions('iris', stage)) found.push(`${stage}@v${(await s.openVersion('iris', stage, v.version)).version}`);
  }
  return found;
}

test('training that diverges in epoch 3: the epoch, batch and last good loss, exit 1, nothing published, no checkpoint left', async () => {
  const store = await tempDir();
  const run = await cli(['run', IRIS, '--store', store, '--set', 'net.optimizer={sgd: {learningRate: 30}}', '--set', 'net.epochs=10']);
  assert.is(run.code, 1);
  const found = /error: stage "net" failed: training diverged in epoch (\d+), batch \d+ of 6: the loss is NaN \(last finite loss [\d.e+]+ at batch \d+\); lower the learning rate or check the data for extreme values; nothing of this stage was published\n/.exec(run.stderr);
  assert.ok(found, run.stderr);
  assert.ok(Number(found[1]) >= 2, 'diverged before a checkpoint was written: the cleanup is not tested');
  assert.equal(await storedVersions(store), []);
  assert.equal(await readdir(join(store, 'iris', 'net')), [], 'its checkpoints outlived the divergence');
  const [record] = await new LocalArtifactStore(store).listRuns('iris');
  assert.equal(record.stages.map((s) => s.status), ['failed', 'skipped']);
});

test('a full disk: a clear error naming the store, exit 1, the stored versions intact; with space again the rerun resumes', async () => {
  const mnt = await tmpfs('4m');
  if (!mnt) return;
  const store = join(mnt, 'store');
  assert.is((await cli(['run', IRIS, '--store', store])).code, 0);
  // Leave four pages: the run record and a checkpoint or two fit, the new versions do not.
  const { bavail, bsize } = await statfs(mnt);
  await writeFile(join(mnt, 'filler'), Buffer.alloc(bavail * bsize - 4 * 4096));
  const full = await cli(['run', IRIS, '--store', store, '--set', 'net.epochs=4']);
  assert.is(full.code, 1, full.stderr);
  assert.match(full.stderr, `error: no space left on the disk of the artifact store ${store} (ENOSPC writing ${store}/iris/net/`);
  assert.match(full.stderr, 'free space there (`pipeline gc` removes versions no longer needed) or pass --store with a folder on another disk');
  assert.match(full.stderr, 'the versions already stored are intact and nothing unfinished was published');
  assert.equal(await storedVersions(store), ['net@v1', 'check@v1']);
  const leftovers = (await readdir(join(store, 'iris', 'net'), { recursive: true })).filter((f) => /\.tmp/.test(f));
  assert.equal(leftovers, [], 'a failed write left its temporary files');

  await rm(join(mnt, 'filler'));
  const again = await cli(['run', IRIS, '--store', store, '--set', 'net.epochs=4']);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stdout, /resuming from the checkpoint of epoch [1-4]\/4/);
  assert.equal(await storedVersions(store), ['net@v1', 'net@v2', 'check@v1', 'check@v2']);
});

test('a read-only store: a clear error, exit 2, nothing changed', async () => {
  const mnt = await tmpfs('4m');
  if (!mnt) return;
  const store = join(mnt, 'store');
  assert.is((await cli(['run', IRIS, '--store', store])).code, 0);
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
  const run = await cli(['run', IRIS, '--store', store, '--set', 'net.epochs=4']);
  assert.is(run.code, 2);
  assert.match(run.stderr, `error: the artifact store ${store} is on a read-only file system (EROFS writing ${store}/iris.lock): pass --store with a writable folder`);
  assert.equal(await storedVersions(store), ['net@v1', 'check@v1']);
});

test('a store path that is a file, or under one: exit 2, naming the file', async () => {
  const dir = await tempDir();
  const file = join(dir, 'artifacts');
  await writeFile(file, 'not a folder');
  for (const store of [file, join(file, 'sub')]) {
    const run = await cli(['run', IRIS, '--store', store]);
    assert.is(run.code, 2);
    assert.match(run.stderr, `error: the artifact store ${store} cannot be used: ${file} is a file, not a folder`);
    assert.match(run.stderr, 'pass --store with a folder, or move that file away');
  }
});

test.run();
