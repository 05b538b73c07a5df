import { readdir, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';
import { PipelineError } from '../errors.js';
import { writeFileAtomic } from '../util/fs.js';

// The locks that let several processes share one store (store.ts says where each lives):
//
//   gate      per pipeline, exclusive: held by gc for its whole pass, and by a run only for the
//             moment it takes its lease, so no run can start while gc judges versions.
//   lease     per run, shared: any number at once; gc leaves a pipeline alone while a live one exists.
//   stage     per (stage, fingerprint): held while one run computes and publishes that version, so
//             another run that needs the same version waits, then finds it and reuses it.
//
// Each is a proper-lockfile folder (its mtime refreshed while held, stale once not refreshed for
// STALE_MS, which also covers holders on other hosts of a shared file system) with an owner file
// beside it naming the process. A lock whose owner ran on this host and is gone (SIGKILL) is taken
// over at once rather than after STALE_MS. Two waiters taking over the same dead lock at the same
// instant can both get it; for a stage lock that costs a computation, which publish() deduplicates.

export type Release = () => Promise<void>;

export interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
  /** What the holder does, for those who wait: "run 20261124T...-ab12cd". */
  holder: string;
}

// Generous: tfjs runs ops synchronously, so a long training step can delay the refresh timer.
const STALE_MS = 60_000;
const UPDATE_MS = 5_000;
const POLL_MIN_MS = 50;
const POLL_MAX_MS = 1_000;

export interface AcquireOptions {
  holder: string;
  /** Poll until the lock is free (true), or fail at once with E_LOCKED (false). */
  wait: boolean;
  /** With `wait`: called once, when the lock is first found held, with who holds it. */
  onWait?: (owner: string) => void;
  /** Without `wait`: the E_LOCKED message, given who holds it. */
  busy?: (owner: string) => string;
}

const ownerPath = (lockPath: string) => `${lockPath}.owner`;

/** Takes the lock folder `lockPath` (created, so its parent must exist). */
export async function acquireLock(lockPath: string, options: AcquireOptions): Promise<Release> {
  const target = lockPath.replace(/\.lock$/, '');
  const lockOptions = {
    lockfilePath: lockPath,
    realpath: false,
    stale: STALE_MS,
    update: UPDATE_MS,
    retries: 0,
    onCompromised: (err: Error) => process.emitWarning(`lock ${lockPath} compromised: ${err.message}`),
  };
  let release: Release | undefined;
  let delay = POLL_MIN_MS;
  let told = false;
  while (!release) {
    try {
      release = await lockfile.lock(target, lockOptions);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
      const owner = await readLockOwner(lockPath);
      if (owner && isDeadHere(owner)) {
        // The owner file goes first: a waiter that reads it between our removal and our new
        // owner file would otherwise take the fresh lock for the dead one.
        await rm(ownerPath(lockPath), { force: true });
        await rm(lockPath, { recursive: true, force: true });
        continue;
      }
      const who = describeOwner(owner);
      if (!options.wait) throw new PipelineError('E_LOCKED', options.busy?.(who) ?? `${lockPath} is held by ${who}`, 2);
      if (!told) options.onWait?.(who);
      told = true;
      await sleep(delay);
      delay = Math.min(delay * 2, POLL_MAX_MS);
    }
  }
  const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), holder: options.holder };
  await writeFileAtomic(ownerPath(lockPath), JSON.stringify(owner));
  const held = release;
  return async () => {
    await rm(ownerPath(lockPath), { force: true });
    await held();
  };
}

/** The owner of a lock that is held and alive, or undefined (free, stale or its process gone). */
export async function liveOwner(lockPath: string): Promise<LockOwner | undefined> {
  const held = await lockfile.check(lockPath.replace(/\.lock$/, ''), { lockfilePath: lockPath, realpath: false, stale: STALE_MS });
  if (!held) return undefined;
  const owner = await readLockOwner(lockPath);
  if (owner && isDeadHere(owner)) return undefined;
  // Between taking the folder and writing the owner file the holder is alive but unnamed.
  return owner ?? { pid: 0, host: '?', startedAt: '?', holder: 'a process starting up' };
}

/**
 * The live owners among the `<prefix>*.lock` folders of `dir`; dead ones are removed. Only for a
 * caller that keeps new ones from appearing (it holds the gate), or the removal could race a taker.
 */
export async function sweepLocks(dir: string, prefix: string): Promise<LockOwner[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const live: LockOwner[] = [];
  for (const name of names.filter((n) => n.startsWith(prefix) && n.endsWith('.lock'))) {
    const owner = await liveOwner(join(dir, name));
    if (owner) live.push(owner);
    else {
      await rm(ownerPath(join(dir, name)), { force: true });
      await rm(join(dir, name), { recursive: true, force: true });
    }
  }
  return live;
}

export function describeOwner(owner: LockOwner | undefined): string {
  if (!owner) return 'another process';
  return `${owner.holder}, pid ${owner.pid} on ${owner.host}, since ${owner.startedAt}`;
}

async function readLockOwner(lockPath: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(ownerPath(lockPath), 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

function isDeadHere(owner: LockOwner): boolean {
  return owner.host === hostname() && !processAlive(owner.pid);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
