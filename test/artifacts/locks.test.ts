import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { acquireLock, liveOwner, sweepLocks } from '../../src/artifacts/locks.js';
import { ROOT, removeTempDirs, tempDir } from '../helpers.js';

test.after(removeTempDirs);

/** A separate process that takes a lock and keeps it until killed. */
async function holdInChild(lockPath: string): Promise<{ pid: number; kill: () => Promise<void> }> {
  const locks = join(ROOT, 'dist', 'src', 'artifacts', 'locks.js');
  const child = spawn(process.execPath, [
    '--input-type=module',
    '-e',
    `const { acquireLock } = await import(${JSON.stringify(locks)});
     await acquireLock(${JSON.stringify(lockPath)}, { holder: 'child', wait: false });
     process.stdout.write('locked\\n');
     setInterval(() => {}, 60_000);`,
  ]);
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    child.on('close', (code) => reject(new Error(`child exited with ${code}`)));
  });
  return {
    pid: child.pid!,
    kill: async () => {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.on('close', resolve));
    },
  };
}

test('a held lock: refused at once without wait, naming the holder; waited for with wait', async () => {
  const dir = await tempDir();
  const path = join(dir, 'x.lock');
  const release = await acquireLock(path, { holder: 'run A', wait: false });
  try {
    await acquireLock(path, { holder: 'run B', wait: false, busy: (owner) => `busy: ${owner}` });
    assert.unreachable('a held lock was taken twice');
  } catch (err) {
    assert.is((err as { code?: string }).code, 'E_LOCKED');
    assert.match((err as Error).message, new RegExp(`^busy: run A, pid ${process.pid} on `));
  }
  const waits: string[] = [];
  let second = false;
  const waiting = acquireLock(path, { holder: 'run B', wait: true, onWait: (owner) => waits.push(owner) }).then((r) => {
    second = true;
    return r;
  });
  // The waiter polls; a few rounds pass while the first holder keeps the lock.
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.not.ok(second, 'the waiter got a held lock');
  await release();
  const releaseB = await waiting;
  assert.is(waits.length, 1, 'onWait is called once');
  assert.match(waits[0], 'run A');
  assert.is((await liveOwner(path))?.holder, 'run B');
  await releaseB();
  assert.is(await liveOwner(path), undefined);
});

test('a lock whose process was killed is taken over at once, not after it goes stale', async () => {
  const dir = await tempDir();
  const path = join(dir, 'stage-x.lock');
  const child = await holdInChild(path);
  assert.is((await liveOwner(path))?.pid, child.pid);
  await child.kill();
  assert.is(await liveOwner(path), undefined, 'a dead holder counts as free');
  const release = await acquireLock(path, { holder: 'me', wait: false });
  assert.is((await liveOwner(path))?.holder, 'me');
  await release();
});

test('sweepLocks reports live holders and removes the locks of dead ones', async () => {
  const dir = await tempDir();
  const live = await acquireLock(join(dir, 'run-a.lock'), { holder: 'run a', wait: false });
  const child = await holdInChild(join(dir, 'run-b.lock'));
  await child.kill();
  const other = await acquireLock(join(dir, 'stage-c.lock'), { holder: 'stage', wait: false });
  const owners = await sweepLocks(dir, 'run-');
  assert.equal(owners.map((o) => o.holder), ['run a']);
  assert.equal((await readdir(dir)).sort(), ['run-a.lock', 'run-a.lock.owner', 'stage-c.lock', 'stage-c.lock.owner']);
  await live();
  await other();
});

test.run();
