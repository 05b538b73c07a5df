import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, rmdir, stat, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { InputError, IntegrityError, PipelineError, StorageError } from '../errors.js';
import { diskUsage, exists, fsyncDir, listFilesRecursive, writeFileAtomic, writeFileSynced } from '../util/fs.js';
import { sha256, sha256File } from '../util/hash.js';
import { acquireLock, describeOwner, processAlive, sweepLocks, type Release } from './locks.js';
import { MANIFEST_FILE, serializeManifest, type Manifest, type ManifestDraft, type RunRecord } from './manifest.js';

// The only module that knows the on-disk layout of the store:
//
//   <root>/<pipeline>/<stage>/v<N>/          one published stage output, manifest.json written last
//   <root>/<pipeline>/<stage>/.tmp/v-<host>-<pid>-<random>/ a version being written (never read;
//                                            removed by the next publish once its process is gone)
//   <root>/<pipeline>/<stage>/.checkpoints/<fingerprint>/<loop>.ckpt
//                                            the last epoch of an unfinished run of the stage's exact
//                                            config, resumed by the next run; deleted once published
//   <root>/<pipeline>/runs/<run-id>.json     one record per `pipeline run`
//   <root>/<pipeline>/runs/<run-id>.html     its report (self-contained: charts, metrics, lineage)
//   <root>/<pipeline>/sweeps/<sweep-id>.json one leaderboard per `pipeline sweep`
//   <root>/<pipeline>.lock                   the gate: held by gc, and briefly by a run taking its lease
//   <root>/<pipeline>/.locks/run-<id>.lock   a running run's lease (locks.ts)
//   <root>/<pipeline>/.locks/stage-<stage>-<fingerprint>.lock   held while that version is computed
//
// A version directory appears only by rename() of a complete, fsynced temp directory, so a crash or
// SIGKILL at any point leaves either no v<N> or a complete one. Runs share the store: version
// numbers are taken by that rename (it fails on an existing v<N>, and the next number is tried),
// and no two runs compute the same (stage, fingerprint) at once.
// A checkpoint file is replaced the same way (temp file, fsync, rename), and carries its own
// sha256, so a torn or edited one is noticed on load rather than resumed from.

const VERSION_DIR = /^v([1-9][0-9]*)$/;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const RUNS_DIR = 'runs';
const SWEEPS_DIR = 'sweeps';
const TMP_DIR = '.tmp';
const LOCKS_DIR = '.locks';
/** A version being written: v-<host>-<pid>-<mkdtemp's 6 characters>. */
const VERSION_TMP = /^v-(.+)-(\d+)-[A-Za-z0-9]{6}$/;
const CHECKPOINTS_DIR = '.checkpoints';
const CHECKPOINT_FILE = /^([A-Za-z0-9][A-Za-z0-9_-]*)\.ckpt$/;
const CHECKPOINT_MAGIC = 'tfjs-pipeline checkpoint 1\n';
const FINGERPRINT = /^[0-9a-f]{64}$/;
/** What writeFileAtomic (util/fs.ts) and checkpoint writes name their temporary files. */
const ATOMIC_TMP = /\.tmp-(\d+)-\d+$/;

export interface StoredVersion {
  pipeline: string;
  stage: string;
  version: number;
  dir: string;
  manifest: Manifest;
  /**
   * Set while the version is only on a remote (cached-store.ts): its URL, which `dir` is too.
   * `materialize` brings its files here.
   */
  remote?: string;
}

/** What a stage's writer gets: a private folder that becomes the version when it returns. */
export type VersionWriter = (dir: string) => Promise<ManifestDraft>;

export interface PublishOptions {
  /** Publish even when a version with this fingerprint exists (--force); otherwise that one is returned. */
  duplicate?: boolean;
  /** The new version's number, given the numbers taken (default: one more than the newest). */
  chooseVersion?: (taken: number[]) => number | Promise<number>;
}

/** A training loop's state after an epoch: what the next run of the same stage config resumes from. */
export interface Checkpoint {
  /** The epoch it was taken after, and the loop's total. */
  epoch: number;
  epochs: number;
  /** The loop's own state as JSON (history, counters, tensor layout); opaque to the store. */
  meta: Record<string, unknown>;
  /** The tensor bytes `meta` describes; opaque to the store. */
  data: Uint8Array;
}

/** The checkpoints of one stage config (stage + fingerprint), one per training loop of the stage. */
export interface CheckpointArea {
  /** The folder, for messages. */
  readonly dir: string;
  /** Where the checkpoint `name` is (or would be), for messages. */
  path(name: string): string;
  /** The checkpoint, checked against its sha256; IntegrityError when it is torn or was edited. */
  read(name: string): Promise<Checkpoint | undefined>;
  /** Replaces the checkpoint atomically: a crash leaves the previous one or the new one, whole. */
  write(name: string, checkpoint: Checkpoint): Promise<void>;
  /** Removes every checkpoint of this stage config (after publishing, or to start over). */
  clear(): Promise<void>;
}

export interface ArtifactStore {
  readonly root: string;
  /**
   * Exclusive hold on one pipeline's part of the store (gc): fails at once (E_LOCKED) while a run
   * or another gc uses it; while held, no run can start. Resolves to its release function.
   */
  lock(pipeline: string): Promise<Release>;
  /**
   * A run's shared hold on a pipeline: any number of runs at once, and gc keeps out while it is
   * held. Waits while gc holds the pipeline (`onWait` says so).
   */
  lockShared(pipeline: string, runId: string, onWait?: (owner: string) => void): Promise<Release>;
  /**
   * Held while one version of a stage with this fingerprint is computed and published: a second
   * caller waits (`onWait` says for whom), then should find that version and reuse it. `holder`
   * names the caller in the messages of those who wait ("run <id>").
   */
  lockStage(pipeline: string, stage: string, fingerprint: string, holder: string, onWait?: (owner: string) => void): Promise<Release>;
  listVersions(pipeline: string, stage: string): Promise<StoredVersion[]>;
  /** The newest version whose manifest has this fingerprint, checked against its hashes. */
  findByFingerprint(pipeline: string, stage: string, fingerprint: string): Promise<StoredVersion | undefined>;
  /** One version (the newest when `version` is omitted), checked against its hashes. */
  openVersion(pipeline: string, stage: string, version?: number): Promise<StoredVersion>;
  /**
   * Writes a new version; when one with the written fingerprint appeared meanwhile, that one is
   * returned and nothing is added (unless `duplicate`).
   */
  publish(pipeline: string, stage: string, write: VersionWriter, options?: PublishOptions): Promise<StoredVersion>;
  /**
   * Called for every version a run uses, under the pipeline's lock, and resolves to it as stored
   * here. With `files`, its files are at `dir` afterwards. A local store has nothing to do; a store
   * in front of a remote downloads a remote-only version when its files are needed, and uploads a
   * version the remote lacks.
   */
  materialize(version: StoredVersion, options: { files: boolean }): Promise<StoredVersion>;
  writeRun(record: RunRecord): Promise<string>;
  /** Writes a sweep's leaderboard (any JSON value) as <pipeline>/sweeps/<id>.json; returns its path. */
  writeSweep(pipeline: string, id: string, summary: unknown): Promise<string>;
  listRuns(pipeline: string): Promise<RunRecord[]>;
  readRun(pipeline: string, runId: string): Promise<RunRecord>;
  /** Where a run's HTML report lives (beside its record). */
  reportPath(pipeline: string, runId: string): string;
  /** Where a path inside the store is, for messages: relative to the working directory when shorter. */
  describe(path: string): string;
  /** Pipelines with a folder in the store. */
  listPipelines(): Promise<string[]>;
  /** A pipeline's versions and the leftovers of crashed writes, with their bytes on disk (for gc). */
  inventory(pipeline: string): Promise<StoreInventory>;
  /** Deletes one version, leftover or checkpoint folder that inventory() listed; the caller holds the pipeline's lock. */
  discard(path: string): Promise<void>;
  /** The checkpoints of one stage config; kept until its version is published. */
  checkpoints(pipeline: string, stage: string, fingerprint: string): CheckpointArea;
}

export interface StoreInventory {
  versions: (StoredVersion & { bytes: number })[];
  leftovers: { path: string; bytes: number }[];
  checkpoints: StoredCheckpoints[];
}

/** One stage config's checkpoint folder, as gc sees it. */
export interface StoredCheckpoints {
  stage: string;
  fingerprint: string;
  path: string;
  bytes: number;
  /** When its newest checkpoint was written (ms since the epoch). */
  modifiedMs: number;
  /** Each loop's checkpoint; `problem` when it cannot be resumed from (torn, edited). */
  loops: { name: string; epoch?: number; epochs?: number; problem?: string }[];
}

/** Whether a name read from a listing (a remote's) is one assertSafeName lets the store write. */
export function isSafeName(name: string): boolean {
  return SAFE_NAME.test(name) && !name.includes('..');
}

export function assertSafeName(kind: string, name: string): void {
  if (!SAFE_NAME.test(name) || name.includes('..')) {
    throw new InputError(
      `${kind} name "${name}" cannot be used as a folder name in the artifact store: ` +
        'use letters, digits, "_", "-" and "." (not starting with "." and without "..")',
    );
  }
  // <root>/serving/ holds exported models in TensorFlow Serving's layout (serving.ts).
  if (kind === 'pipeline' && name === 'serving') {
    throw new InputError('pipeline name "serving" is reserved: <store>/serving/ holds exported models; rename the pipeline');
  }
  if (kind === 'stage' && (name === RUNS_DIR || name === SWEEPS_DIR)) {
    throw new InputError(`stage name "${name}" is reserved: <store>/<pipeline>/${name}/ holds ${name === RUNS_DIR ? 'run records' : 'sweep leaderboards'}; rename the stage`);
  }
}

export class LocalArtifactStore implements ArtifactStore {
  constructor(readonly root: string) {}

  describe(path: string): string {
    const rel = relative(process.cwd(), path);
    return rel.startsWith('..') ? path : rel;
  }

  private stageDir(pipeline: string, stage: string): string {
    assertSafeName('pipeline', pipeline);
    assertSafeName('stage', stage);
    return join(this.root, pipeline, stage);
  }

  private gatePath(pipeline: string): string {
    assertSafeName('pipeline', pipeline);
    return join(this.root, `${pipeline}.lock`);
  }

  private async locksDir(pipeline: string): Promise<string> {
    assertSafeName('pipeline', pipeline);
    const dir = join(this.root, pipeline, LOCKS_DIR);
    await this.writing(dir, () => mkdir(dir, { recursive: true }));
    return dir;
  }

  async lock(pipeline: string): Promise<Release> {
    const where = this.describe(join(this.root, pipeline));
    const locks = await this.locksDir(pipeline);
    const release = await this.writing(this.gatePath(pipeline), () =>
      acquireLock(this.gatePath(pipeline), {
        holder: 'pipeline gc',
        wait: false,
        busy: (owner) => `another pipeline process (${owner}) holds ${where}: wait for it to finish`,
      }),
    );
    try {
      // With the gate held no lease can appear, so what is found dead here stays dead.
      const runs = await sweepLocks(locks, 'run-');
      if (runs.length) {
        throw new PipelineError(
          'E_LOCKED',
          `another pipeline run (${describeOwner(runs[0])}${runs.length > 1 ? `, and ${runs.length - 1} more` : ''}) ` +
            `is using ${where}: wait for it to finish`,
          2,
        );
      }
      await sweepLocks(locks, 'stage-');
    } catch (err) {
      await release();
      throw err;
    }
    return release;
  }

  async lockShared(pipeline: string, runId: string, onWait?: (owner: string) => void): Promise<Release> {
    assertSafeName('run', runId);
    const locks = await this.locksDir(pipeline);
    const holder = `run ${runId}`;
    const gate = await this.writing(this.gatePath(pipeline), () => acquireLock(this.gatePath(pipeline), { holder, wait: true, onWait }));
    try {
      const lease = join(locks, `run-${runId}.lock`);
      return await this.writing(lease, () => acquireLock(lease, { holder, wait: false }));
    } finally {
      await gate();
    }
  }

  async lockStage(pipeline: string, stage: string, fingerprint: string, holder: string, onWait?: (owner: string) => void): Promise<Release> {
    assertSafeName('stage', stage);
    if (!/^[0-9a-f]{8,128}$/.test(fingerprint)) throw new PipelineError('E_INTERNAL', `not a fingerprint: "${fingerprint}"`, 1);
    const path = join(await this.locksDir(pipeline), `stage-${stage}-${fingerprint}.lock`);
    return acquireLock(path, { holder, wait: true, onWait });
  }

  async listVersions(pipeline: string, stage: string): Promise<StoredVersion[]> {
    const dir = this.stageDir(pipeline, stage);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const versions: StoredVersion[] = [];
    for (const name of names) {
      const match = VERSION_DIR.exec(name);
      if (!match) continue;
      const manifest = await this.readManifest(join(dir, name));
      if (manifest) versions.push({ pipeline, stage, version: Number(match[1]), dir: join(dir, name), manifest });
    }
    return versions.sort((a, b) => a.version - b.version);
  }

  async findByFingerprint(pipeline: string, stage: string, fingerprint: string): Promise<StoredVersion | undefined> {
    const versions = await this.listVersions(pipeline, stage);
    const match = versions.reverse().find((v) => v.manifest.fingerprint === fingerprint);
    if (match) await this.verify(match);
    return match;
  }

  async openVersion(pipeline: string, stage: string, version?: number): Promise<StoredVersion> {
    const versions = await this.listVersions(pipeline, stage);
    const found = version === undefined ? versions.at(-1) : versions.find((v) => v.version === version);
    if (!found) {
      const known = versions.map((v) => `v${v.version}`).join(', ') || 'none';
      throw new InputError(
        `no version ${version === undefined ? '' : `v${version} `}of stage "${stage}" in ` +
          `${this.describe(this.stageDir(pipeline, stage))} (stored versions: ${known})`,
      );
    }
    await this.verify(found);
    return found;
  }

  /** Refuses a version whose files differ from what its manifest recorded. */
  private async verify(v: StoredVersion): Promise<void> {
    const where = this.describe(v.dir);
    const rebuild = `rerun with --force to build a new version of "${v.stage}"`;
    for (const [file, expected] of Object.entries(v.manifest.files)) {
      let actual;
      try {
        actual = await sha256File(join(v.dir, file));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new IntegrityError(`${where}/${file} is listed in its manifest but missing: ${rebuild}`);
        }
        throw err;
      }
      if (actual.sha256 !== expected.sha256 || actual.bytes !== expected.bytes) {
        throw new IntegrityError(
          `${where}/${file} was changed after it was stored: expected sha256 ${expected.sha256.slice(0, 12)}… ` +
            `(${expected.bytes} bytes), found ${actual.sha256.slice(0, 12)}… (${actual.bytes} bytes); ` +
            `refusing to use it: ${rebuild}`,
        );
      }
    }
    const present = (await listFilesRecursive(v.dir)).filter((f) => f !== MANIFEST_FILE);
    const extra = present.filter((f) => !(f in v.manifest.files));
    if (extra.length) {
      throw new IntegrityError(`${where} holds files its manifest does not list (${extra.join(', ')}): ${rebuild}`);
    }
  }

  private async readManifest(dir: string): Promise<Manifest | undefined> {
    try {
      return JSON.parse(await readFile(join(dir, MANIFEST_FILE), 'utf8')) as Manifest;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new IntegrityError(`${this.describe(join(dir, MANIFEST_FILE))} cannot be read: ${(err as Error).message}`);
    }
  }

  async materialize(version: StoredVersion): Promise<StoredVersion> {
    return version;
  }

  async publish(pipeline: string, stage: string, write: VersionWriter, options: PublishOptions = {}): Promise<StoredVersion> {
    const stageDir = this.stageDir(pipeline, stage);
    const tmpRoot = join(stageDir, TMP_DIR);
    const tmp = await this.writing(tmpRoot, async () => {
      await this.removeDeadWrites(tmpRoot);
      return makeTempDir(tmpRoot, `v-${hostLabel()}-${process.pid}-`);
    });
    try {
      const draft = await write(tmp);
      const files: Manifest['files'] = {};
      for (const file of await listFilesRecursive(tmp)) {
        if (file === MANIFEST_FILE) throw new PipelineError('E_INTERNAL', `stage wrote its own ${MANIFEST_FILE}`, 1);
        files[file] = await sha256File(join(tmp, file));
      }
      if (!options.duplicate) {
        const same = await this.findByFingerprint(pipeline, stage, draft.fingerprint);
        if (same) return same;
      }
      const taken = await this.versionNumbers(stageDir);
      let version = (await options.chooseVersion?.(taken)) ?? Math.max(0, ...taken) + 1;
      if (!Number.isSafeInteger(version) || version < 1 || taken.includes(version)) {
        throw new PipelineError('E_INTERNAL', `cannot publish ${pipeline}/${stage} as v${version}: taken or not a version number`, 1);
      }
      // Another run may take the number between the listing and the rename, which then fails
      // (a v<N> is never empty): the manifest is rewritten for the next free number and tried again.
      for (;;) {
        const manifest: Manifest = { ...draft, schemaVersion: 1, pipeline, stage, version, files };
        await writeFileSynced(join(tmp, MANIFEST_FILE), serializeManifest(manifest));
        await fsyncDir(tmp);
        await faultPoint('before-publish');
        const dir = join(stageDir, `v${version}`);
        try {
          await rename(tmp, dir);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
          version = Math.max(version, ...(await this.versionNumbers(stageDir))) + 1;
          continue;
        }
        await fsyncDir(stageDir);
        await faultPoint('after-publish');
        return { pipeline, stage, version, dir, manifest };
      }
    } catch (err) {
      // The stage writes its files itself, so a full disk surfaces here from any of its writes.
      throw await this.storageError(err, tmp);
    } finally {
      await rm(tmp, { recursive: true, force: true });
      // Empty once no other process writes here; it is made again by the next writer.
      await rmdir(tmpRoot).catch(() => undefined);
    }
  }

  private async versionNumbers(stageDir: string): Promise<number[]> {
    const names = await readdir(stageDir).catch(() => [] as string[]);
    return names.flatMap((n) => {
      const match = VERSION_DIR.exec(n);
      return match ? [Number(match[1])] : [];
    });
  }

  /** Versions half-written by processes of this host that are gone (crashed or killed). */
  private async removeDeadWrites(tmpRoot: string): Promise<void> {
    for (const name of await readdir(tmpRoot).catch(() => [] as string[])) {
      const match = VERSION_TMP.exec(name);
      if (match && match[1] === hostLabel() && !processAlive(Number(match[2]))) {
        await rm(join(tmpRoot, name), { recursive: true, force: true });
      }
    }
  }

  /** Runs a write, turning a full disk or an unwritable store into a StorageError that says what to do. */
  private async writing<T>(path: string, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (err) {
      throw await this.storageError(err, path);
    }
  }

  /** `err` as a StorageError when the store's disk or folder is at fault; any other error unchanged. */
  private async storageError(err: unknown, path: string): Promise<unknown> {
    if (err instanceof PipelineError) return err;
    const code = (err as NodeJS.ErrnoException)?.code;
    const root = this.describe(this.root);
    const where = this.describe((err as NodeJS.ErrnoException)?.path ?? path);
    switch (code) {
      case 'ENOSPC':
      case 'EDQUOT':
        return new StorageError(
          `no space left on the disk of the artifact store ${root} (${code} writing ${where}): free space there ` +
            '(`pipeline gc` removes versions no longer needed) or pass --store with a folder on another disk, then run ' +
            'the same command again; the versions already stored are intact and nothing unfinished was published',
          code,
          { cause: err },
        );
      case 'EROFS':
        return new StorageError(
          `the artifact store ${root} is on a read-only file system (EROFS writing ${where}): pass --store with a ` +
            'writable folder; nothing in it was changed',
          code,
          { cause: err },
        );
      case 'EACCES':
      case 'EPERM':
        return new StorageError(
          `no permission to write ${where} in the artifact store ${root} (${code}): make the folder writable for this ` +
            'user or pass --store with a writable folder; nothing in it was changed',
          code,
          { cause: err },
        );
      case 'ENOTDIR':
      case 'EEXIST': {
        const blocker = await firstNonFolder((err as NodeJS.ErrnoException).path ?? path);
        if (!blocker) return err;
        return new StorageError(
          `the artifact store ${root} cannot be used: ${this.describe(blocker)} is a file, not a folder (${code} ` +
            `writing ${where}): pass --store with a folder, or move that file away`,
          code,
          { cause: err },
        );
      }
      default:
        return err;
    }
  }

  async listPipelines(): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(this.root, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    // <root>/serving/ holds exported models (serving.ts), and <pipeline>.lock is a folder while held.
    const names = entries.filter((e) => e.isDirectory() && SAFE_NAME.test(e.name) && e.name !== 'serving').map((e) => e.name);
    return names.filter((n) => !(n.endsWith('.lock') && names.includes(n.slice(0, -'.lock'.length)))).sort();
  }

  async inventory(pipeline: string): Promise<StoreInventory> {
    assertSafeName('pipeline', pipeline);
    const found: StoreInventory = { versions: [], leftovers: [], checkpoints: [] };
    let entries;
    try {
      entries = await readdir(join(this.root, pipeline), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return found;
      throw err;
    }
    for (const entry of entries.filter((e) => e.isDirectory())) {
      const dir = join(this.root, pipeline, entry.name);
      if (entry.name === RUNS_DIR) {
        // writeFileAtomic's temporaries (<record>.json.tmp-<pid>-<ms>) that a crash left behind;
        // `pipeline report` writes here without the lock, so a live writer's is left alone.
        const dead = (n: string) => !processAlive(Number(ATOMIC_TMP.exec(n)?.[1]));
        for (const name of (await readdir(dir)).filter((n) => ATOMIC_TMP.test(n) && dead(n))) {
          found.leftovers.push({ path: join(dir, name), bytes: await diskUsage(join(dir, name)) });
        }
      } else if (SAFE_NAME.test(entry.name) && entry.name !== SWEEPS_DIR) {
        for (const v of await this.listVersions(pipeline, entry.name)) found.versions.push({ ...v, bytes: await diskUsage(v.dir) });
        if (await exists(join(dir, TMP_DIR))) found.leftovers.push({ path: join(dir, TMP_DIR), bytes: await diskUsage(join(dir, TMP_DIR)) });
        await this.inventoryCheckpoints(pipeline, entry.name, found);
      }
    }
    return found;
  }

  private async inventoryCheckpoints(pipeline: string, stage: string, found: StoreInventory): Promise<void> {
    const root = join(this.stageDir(pipeline, stage), CHECKPOINTS_DIR);
    const fingerprints = (await readdir(root).catch(() => [] as string[])).filter((n) => FINGERPRINT.test(n));
    for (const fingerprint of fingerprints) {
      const area = this.checkpoints(pipeline, stage, fingerprint);
      const names = await readdir(area.dir);
      let modifiedMs = 0;
      const loops: StoredCheckpoints['loops'] = [];
      for (const file of names) {
        const match = CHECKPOINT_FILE.exec(file);
        if (ATOMIC_TMP.test(file) && !processAlive(Number(ATOMIC_TMP.exec(file)![1]))) {
          found.leftovers.push({ path: join(area.dir, file), bytes: await diskUsage(join(area.dir, file)) });
        }
        if (!match) continue;
        modifiedMs = Math.max(modifiedMs, (await stat(join(area.dir, file))).mtimeMs);
        try {
          const checkpoint = await area.read(match[1]);
          if (checkpoint) loops.push({ name: match[1], epoch: checkpoint.epoch, epochs: checkpoint.epochs });
        } catch (err) {
          loops.push({ name: match[1], problem: (err as Error).message });
        }
      }
      found.checkpoints.push({ stage, fingerprint, path: area.dir, bytes: await diskUsage(area.dir), modifiedMs, loops });
    }
  }

  async discard(path: string): Promise<void> {
    const parts = relative(this.root, path).split(sep);
    const [pipeline, folder, leaf, fingerprint, file] = parts;
    // Only the shapes inventory() lists, so a wrong path can never delete anything else.
    const isVersion = parts.length === 3 && VERSION_DIR.test(leaf ?? '');
    const inStage = SAFE_NAME.test(pipeline ?? '') && SAFE_NAME.test(folder ?? '') && folder !== RUNS_DIR;
    const isCheckpoints = inStage && leaf === CHECKPOINTS_DIR && FINGERPRINT.test(fingerprint ?? '');
    const allowed =
      (parts.length === 3 &&
        SAFE_NAME.test(pipeline) &&
        (folder === RUNS_DIR ? ATOMIC_TMP.test(leaf) : inStage && (isVersion || leaf === TMP_DIR))) ||
      (parts.length === 4 && isCheckpoints) ||
      (parts.length === 5 && isCheckpoints && ATOMIC_TMP.test(file));
    if (!allowed) throw new PipelineError('E_INTERNAL', `refusing to discard ${path}: not a version, leftover or checkpoint in ${this.root}`, 1);
    if (parts.length === 4) {
      await this.checkpoints(pipeline, folder, fingerprint).clear();
      return;
    }
    if (!isVersion) {
      await rm(path, { recursive: true, force: true });
      return;
    }
    // Out of sight first, by rename: a crash while deleting must not leave a v<N> with files missing.
    const stageDir = join(this.root, pipeline, folder);
    await mkdir(join(stageDir, TMP_DIR), { recursive: true });
    const doomed = await mkdtemp(join(stageDir, TMP_DIR, `gc-${leaf}-`));
    await rename(path, join(doomed, leaf));
    await fsyncDir(stageDir);
    await rm(doomed, { recursive: true, force: true });
    await rmdir(join(stageDir, TMP_DIR)).catch(() => undefined);
  }

  checkpoints(pipeline: string, stage: string, fingerprint: string): CheckpointArea {
    if (!FINGERPRINT.test(fingerprint)) throw new PipelineError('E_INTERNAL', `not a stage fingerprint: "${fingerprint}"`, 1);
    const root = join(this.stageDir(pipeline, stage), CHECKPOINTS_DIR);
    const dir = join(root, fingerprint);
    const pathOf = (name: string) => {
      if (!CHECKPOINT_FILE.test(`${name}.ckpt`)) throw new PipelineError('E_INTERNAL', `not a checkpoint name: "${name}"`, 1);
      return join(dir, `${name}.ckpt`);
    };
    return {
      dir,
      path: pathOf,
      read: async (name) => {
        const path = pathOf(name);
        let bytes: Buffer;
        try {
          bytes = await readFile(path);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
          throw new IntegrityError(`checkpoint ${this.describe(path)} cannot be read: ${(err as Error).message}`);
        }
        return decodeCheckpoint(bytes, this.describe(path));
      },
      write: async (name, checkpoint) => {
        const path = pathOf(name);
        const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
        const bytes = encodeCheckpoint(checkpoint);
        await this.writing(tmp, async () => {
          try {
            await mkdir(dir, { recursive: true });
            const handle = await open(tmp, 'w');
            try {
              // In two halves, so the crash tests can stop the process with half a checkpoint on disk.
              const half = Math.floor(bytes.length / 2);
              await writeAll(handle, bytes.subarray(0, half));
              await faultPoint('checkpoint-write');
              await writeAll(handle, bytes.subarray(half));
              await handle.sync();
            } finally {
              await handle.close();
            }
            await rename(tmp, path);
            await fsyncDir(dir);
          } catch (err) {
            // A full disk leaves a partial temp file; removing it gives the space back.
            await rm(tmp, { force: true });
            throw err;
          }
        });
        await faultPoint('after-checkpoint');
      },
      clear: async () => {
        await rm(dir, { recursive: true, force: true });
        // The stage's .checkpoints folder goes with its last config.
        await rmdir(root).catch(() => undefined);
      },
    };
  }

  private runsDir(pipeline: string): string {
    assertSafeName('pipeline', pipeline);
    return join(this.root, pipeline, RUNS_DIR);
  }

  async writeRun(record: RunRecord): Promise<string> {
    const path = join(this.runsDir(record.pipeline), `${record.id}.json`);
    await this.writing(path, async () => {
      await mkdir(this.runsDir(record.pipeline), { recursive: true });
      await writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`);
    });
    return path;
  }

  async writeSweep(pipeline: string, id: string, summary: unknown): Promise<string> {
    assertSafeName('sweep', id);
    const dir = join(this.root, pipeline, SWEEPS_DIR);
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${id}.json`);
    await writeFileAtomic(path, `${JSON.stringify(summary, null, 2)}\n`);
    return path;
  }

  reportPath(pipeline: string, runId: string): string {
    assertSafeName('run', runId);
    return join(this.runsDir(pipeline), `${runId}.html`);
  }

  async listRuns(pipeline: string): Promise<RunRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.runsDir(pipeline));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const runs: RunRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const path = join(this.runsDir(pipeline), name);
      try {
        runs.push(JSON.parse(await readFile(path, 'utf8')) as RunRecord);
      } catch (err) {
        throw new InputError(`${path}: not a readable run record (${(err as Error).message}); move it away or delete it`);
      }
    }
    return runs.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  async readRun(pipeline: string, runId: string): Promise<RunRecord> {
    const runs = await this.listRuns(pipeline);
    const matches = runs.filter((r) => r.id === runId || r.id.startsWith(runId));
    if (matches.length === 1) return matches[0];
    const known = runs.slice(-5).map((r) => r.id).join(', ') || 'none';
    throw new InputError(
      matches.length === 0
        ? `no run "${runId}" of pipeline "${pipeline}" (latest runs: ${known})`
        : `run id "${runId}" is ambiguous: ${matches.map((r) => r.id).join(', ')}`,
    );
  }
}

/** The host in temporary names: what a folder name may hold. */
function hostLabel(): string {
  return hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'host';
}

// A checkpoint file: a magic line, a JSON line with the body's length and sha256, then the body
// (the meta JSON followed by the tensor bytes). One file, so one rename replaces it whole.

function encodeCheckpoint(checkpoint: Checkpoint): Buffer {
  const meta = Buffer.from(JSON.stringify({ epoch: checkpoint.epoch, epochs: checkpoint.epochs, meta: checkpoint.meta }));
  const body = Buffer.concat([meta, checkpoint.data]);
  const header = JSON.stringify({ bytes: body.length, metaBytes: meta.length, sha256: sha256(body) });
  return Buffer.concat([Buffer.from(`${CHECKPOINT_MAGIC}${header}\n`), body]);
}

function decodeCheckpoint(bytes: Buffer, where: string): Checkpoint {
  const fail = (why: string): never => {
    throw new IntegrityError(`checkpoint ${where} cannot be resumed from: ${why}`);
  };
  if (!bytes.subarray(0, CHECKPOINT_MAGIC.length).equals(Buffer.from(CHECKPOINT_MAGIC))) fail('not a tfjs-pipeline checkpoint');
  const headerEnd = bytes.indexOf(0x0a, CHECKPOINT_MAGIC.length);
  if (headerEnd < 0) fail('its header is cut short');
  let header: { bytes?: unknown; metaBytes?: unknown; sha256?: unknown } = {};
  try {
    header = JSON.parse(bytes.subarray(CHECKPOINT_MAGIC.length, headerEnd).toString('utf8'));
  } catch {
    fail('its header is not JSON');
  }
  const body = bytes.subarray(headerEnd + 1);
  if (header.bytes !== body.length) fail(`it holds ${body.length} bytes where its header says ${String(header.bytes)} (a torn write)`);
  if (header.sha256 !== sha256(body)) fail('its sha256 does not match its contents (changed after it was written)');
  const metaBytes = Number(header.metaBytes);
  const parsed = JSON.parse(body.subarray(0, metaBytes).toString('utf8')) as Pick<Checkpoint, 'epoch' | 'epochs' | 'meta'>;
  return { epoch: parsed.epoch, epochs: parsed.epochs, meta: parsed.meta, data: new Uint8Array(body.subarray(metaBytes)) };
}

/** write() may write less than asked (a nearly full disk does): what is left is written until done or an error. */
async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    done += (await handle.write(bytes, done, bytes.length - done)).bytesWritten;
  }
}

/** The first of `path` and its parent folders, from the top down, that exists and is not a folder. */
async function firstNonFolder(path: string): Promise<string | undefined> {
  const chain: string[] = [];
  for (let p = path; p !== dirname(p); p = dirname(p)) chain.unshift(p);
  for (const p of chain) {
    try {
      if (!(await stat(p)).isDirectory()) return p;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

interface LockOwner {
  pid: number;
  host: string;
  startedAt: string;
}

/** mkdtemp under `root`, made first; another writer's cleanup may remove `root` in between. */
async function makeTempDir(root: string, prefix: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(root, { recursive: true });
    try {
      return await mkdtemp(join(root, prefix));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 10) throw err;
    }
  }
}

/**
 * Fault injection for the crash tests (test-only, documented here): with TFJS_PIPELINE_FAULT=<point>,
 * the process announces the point on stderr and waits there, so a test can SIGKILL it at exactly
 * that moment. Points: checkpoint-write (half a checkpoint file written), after-checkpoint,
 * before-publish (a version complete in .tmp), after-publish (renamed into place, its checkpoints
 * not yet deleted).
 */
const faultHits = new Map<string, number>();
export async function faultPoint(point: string): Promise<void> {
  // <point> stops at its first pass, <point>:<n> at its n-th (the n-th checkpoint written, say).
  const [wanted, nth] = (process.env.TFJS_PIPELINE_FAULT ?? '').split(':');
  if (wanted !== point) return;
  const hits = (faultHits.get(point) ?? 0) + 1;
  faultHits.set(point, hits);
  if (hits !== Number(nth ?? 1)) return;
  process.stderr.write(`fault point reached: ${point}${nth ? `:${nth}` : ''}\n`);
  // A pending promise alone would let Node exit; the interval keeps the process waiting to be killed.
  await new Promise(() => setInterval(() => {}, 60_000));
}
