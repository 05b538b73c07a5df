import { mkdir, mkdtemp, readdir, readFile, rename, rm, rmdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, relative, sep } from 'node:path';
import { InputError, IntegrityError, PipelineError } from '../errors.js';
import { diskUsage, exists, fsyncDir, listFilesRecursive, writeFileAtomic, writeFileSynced } from '../util/fs.js';
import { sha256File } from '../util/hash.js';
import { acquireLock, describeOwner, processAlive, sweepLocks, type Release } from './locks.js';
import { MANIFEST_FILE, serializeManifest, type Manifest, type ManifestDraft, type RunRecord } from './manifest.js';

// The only module that knows the on-disk layout of the store:
//
//   <root>/<pipeline>/<stage>/v<N>/          one published stage output, manifest.json written last
//   <root>/<pipeline>/<stage>/.tmp/v-<host>-<pid>-<random>/ a version being written (never read;
//                                            removed by the next publish once its process is gone)
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

const VERSION_DIR = /^v([1-9][0-9]*)$/;
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const RUNS_DIR = 'runs';
const SWEEPS_DIR = 'sweeps';
const TMP_DIR = '.tmp';
const LOCKS_DIR = '.locks';
/** A version being written: v-<host>-<pid>-<mkdtemp's 6 characters>. */
const VERSION_TMP = /^v-(.+)-(\d+)-[A-Za-z0-9]{6}$/;
/** What writeFileAtomic names its temporary files (util/fs.ts). */
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
  /** Deletes one version or leftover that inventory() listed; the caller holds lock(pipeline). */
  discard(path: string): Promise<void>;
}

export interface StoreInventory {
  versions: (StoredVersion & { bytes: number })[];
  leftovers: { path: string; bytes: number }[];
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
    await mkdir(dir, { recursive: true });
    return dir;
  }

  async lock(pipeline: string): Promise<Release> {
    const where = this.describe(join(this.root, pipeline));
    const locks = await this.locksDir(pipeline);
    const release = await acquireLock(this.gatePath(pipeline), {
      holder: 'pipeline gc',
      wait: false,
      busy: (owner) => `another pipeline process (${owner}) holds ${where}: wait for it to finish`,
    });
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
    const gate = await acquireLock(this.gatePath(pipeline), { holder, wait: true, onWait });
    try {
      return await acquireLock(join(locks, `run-${runId}.lock`), { holder, wait: false });
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
    await this.removeDeadWrites(tmpRoot);
    const tmp = await makeTempDir(tmpRoot, `v-${hostLabel()}-${process.pid}-`);
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
        return { pipeline, stage, version, dir, manifest };
      }
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
    const found: StoreInventory = { versions: [], leftovers: [] };
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
      }
    }
    return found;
  }

  async discard(path: string): Promise<void> {
    const parts = relative(this.root, path).split(sep);
    const [pipeline, folder, leaf] = parts;
    // Only the shapes inventory() lists, so a wrong path can never delete anything else.
    const isVersion = VERSION_DIR.test(leaf ?? '');
    const allowed =
      parts.length === 3 &&
      SAFE_NAME.test(pipeline) &&
      (folder === RUNS_DIR ? ATOMIC_TMP.test(leaf) : SAFE_NAME.test(folder) && (isVersion || leaf === TMP_DIR));
    if (!allowed) throw new PipelineError('E_INTERNAL', `refusing to discard ${path}: not a version or leftover in ${this.root}`, 1);
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

  private runsDir(pipeline: string): string {
    assertSafeName('pipeline', pipeline);
    return join(this.root, pipeline, RUNS_DIR);
  }

  async writeRun(record: RunRecord): Promise<string> {
    const path = join(this.runsDir(record.pipeline), `${record.id}.json`);
    await mkdir(this.runsDir(record.pipeline), { recursive: true });
    await writeFileAtomic(path, `${JSON.stringify(record, null, 2)}\n`);
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
 * Fault injection for the crash tests: with TFJS_PIPELINE_FAULT=<point>, the process announces the
 * point on stderr and waits there, so a test can SIGKILL it at exactly that moment.
 */
export async function faultPoint(point: string): Promise<void> {
  if (process.env.TFJS_PIPELINE_FAULT !== point) return;
  process.stderr.write(`fault point reached: ${point}\n`);
  // A pending promise alone would let Node exit; the interval keeps the process waiting to be killed.
  await new Promise(() => setInterval(() => {}, 60_000));
}
