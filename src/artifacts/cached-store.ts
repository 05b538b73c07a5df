import { join } from 'node:path';
import { InputError, PipelineError } from '../errors.js';
import { sameOutput, type RunRecord } from './manifest.js';
import type { Release } from './locks.js';
import type { S3Remote, TransferCount } from './s3-remote.js';
import type { ArtifactStore, CheckpointArea, LocalArtifactStore, PublishOptions, StoreInventory, StoredVersion, VersionWriter } from './store.js';

// A remote store with a local store as its cache in front; the engine talks to one ArtifactStore.
// Lookups try the local store, then the remote. A remote version's files come down only when
// something reads them (materialize): into the local store, under the remote's number when that is
// free here, so both stores usually agree on numbers. Publishing writes the local version, then
// uploads it; a version the remote lacks (an upload that failed or was killed, a store used without
// the remote) is uploaded when a run uses it, or by `pipeline push`. Run records, reports, locks and
// gc stay local: the remote only ever grows.

export interface VersionTransfer {
  pipeline: string;
  stage: string;
  /** The version's number in the store it came from, and in the one it went to. */
  from: number;
  to: number;
  /** False when the destination held this output already. */
  created: boolean;
  moved: TransferCount;
  /** Files the destination held already. */
  present: TransferCount;
}

export interface VersionSelection {
  pipeline?: string;
  stage?: string;
  version?: number;
}

export class CachedArtifactStore implements ArtifactStore {
  /** Versions known to be on the remote (it never loses one), so a run checks each once. */
  private readonly onRemote = new Set<string>();

  constructor(
    readonly local: LocalArtifactStore,
    readonly remote: S3Remote,
  ) {}

  get root(): string {
    return this.local.root;
  }

  describe(path: string): string {
    return path.startsWith('s3://') ? path : this.local.describe(path);
  }

  lock(pipeline: string): Promise<() => Promise<void>> {
    return this.local.lock(pipeline);
  }

  // Locks are per machine: across machines the remote's conditional manifest writes keep
  // versions apart (two machines may compute the same stage; both results are valid).
  lockShared(pipeline: string, runId: string, onWait?: (owner: string) => void): Promise<Release> {
    return this.local.lockShared(pipeline, runId, onWait);
  }

  lockStage(pipeline: string, stage: string, fingerprint: string, holder: string, onWait?: (owner: string) => void): Promise<Release> {
    return this.local.lockStage(pipeline, stage, fingerprint, holder, onWait);
  }

  /** Checkpoints stay on this machine: a resumed run resumes where it was interrupted. */
  checkpoints(pipeline: string, stage: string, fingerprint: string): CheckpointArea {
    return this.local.checkpoints(pipeline, stage, fingerprint);
  }

  writeSweep(pipeline: string, id: string, summary: unknown): Promise<string> {
    return this.local.writeSweep(pipeline, id, summary);
  }

  /** Local versions, and the remote's that hold an output the local store lacks. */
  async listVersions(pipeline: string, stage: string): Promise<StoredVersion[]> {
    const [here, there] = await Promise.all([this.local.listVersions(pipeline, stage), this.remote.listVersions(pipeline, stage)]);
    const onlyThere = there.filter((r) => !here.some((l) => sameOutput(l.manifest, r.manifest)));
    return [...here, ...onlyThere].sort((a, b) => a.version - b.version || Number(Boolean(a.remote)) - Number(Boolean(b.remote)));
  }

  async findByFingerprint(pipeline: string, stage: string, fingerprint: string): Promise<StoredVersion | undefined> {
    return (await this.local.findByFingerprint(pipeline, stage, fingerprint)) ?? this.remote.findByFingerprint(pipeline, stage, fingerprint);
  }

  /** A local version is checked against its hashes here; a remote one when its files come down. */
  async openVersion(pipeline: string, stage: string, version?: number): Promise<StoredVersion> {
    if (version !== undefined) {
      if ((await this.local.listVersions(pipeline, stage)).some((v) => v.version === version)) {
        return this.local.openVersion(pipeline, stage, version);
      }
      const there = await this.remote.openVersion(pipeline, stage, version, { missingOk: true });
      if (there) return there;
    }
    const all = await this.listVersions(pipeline, stage);
    const newest = version === undefined ? all.at(-1) : undefined;
    if (!newest) {
      const known = all.map((v) => `v${v.version}${v.remote ? ' (remote)' : ''}`).join(', ') || 'none';
      throw new InputError(
        `no version ${version === undefined ? '' : `v${version} `}of stage "${stage}" in ` +
          `${this.local.describe(join(this.local.root, pipeline, stage))} or ${this.remote.url}/${pipeline}/${stage} (stored versions: ${known})`,
      );
    }
    return newest.remote ? newest : this.local.openVersion(pipeline, stage, newest.version);
  }

  async publish(pipeline: string, stage: string, write: VersionWriter, options: PublishOptions = {}): Promise<StoredVersion> {
    // After the newest on either side, asked once the stage has run (which may take hours), so the
    // upload keeps the number unless another machine publishes this stage in the meantime.
    const chooseVersion =
      options.chooseVersion ??
      (async (taken: number[]) => {
        const remote = await this.remote.listStage(pipeline, stage).catch(() => ({ versions: [] }));
        // Unreachable now: the local version is kept all the same, and the upload below says so.
        return Math.max(0, ...remote.versions, ...taken) + 1;
      });
    const stored = await this.local.publish(pipeline, stage, write, { ...options, chooseVersion });
    await this.ensureOnRemote(stored);
    return stored;
  }

  async materialize(version: StoredVersion, options: { files: boolean }): Promise<StoredVersion> {
    if (!version.remote) {
      await this.ensureOnRemote(version);
      return version;
    }
    if (!options.files) return version;
    const { stored } = await fetchVersion(this.local, this.remote, version);
    this.onRemote.add(key(stored));
    return stored;
  }

  private async ensureOnRemote(v: StoredVersion): Promise<void> {
    if (this.onRemote.has(key(v))) return;
    try {
      await this.remote.upload(v);
    } catch (err) {
      const e = err as PipelineError;
      throw new PipelineError(
        e.code ?? 'E_REMOTE',
        `${key(v)} is stored in ${this.local.describe(v.dir)}, but uploading it to ${this.remote.url} failed: ${e.message}; ` +
          'the next run that uses it, or `pipeline push`, uploads it',
        e.exitCode ?? 1,
        { cause: err },
      );
    }
    this.onRemote.add(key(v));
  }

  writeRun(record: RunRecord): Promise<string> {
    return this.local.writeRun(record);
  }

  listRuns(pipeline: string): Promise<RunRecord[]> {
    return this.local.listRuns(pipeline);
  }

  readRun(pipeline: string, runId: string): Promise<RunRecord> {
    return this.local.readRun(pipeline, runId);
  }

  reportPath(pipeline: string, runId: string): string {
    return this.local.reportPath(pipeline, runId);
  }

  async listPipelines(): Promise<string[]> {
    const [here, there] = await Promise.all([this.local.listPipelines(), this.remote.listPipelines()]);
    return [...new Set([...here, ...there])].sort();
  }

  inventory(pipeline: string): Promise<StoreInventory> {
    return this.local.inventory(pipeline);
  }

  discard(path: string): Promise<void> {
    return this.local.discard(path);
  }
}

function key(v: { pipeline: string; stage: string; version: number }): string {
  return `${v.pipeline}/${v.stage}@v${v.version}`;
}

function filesOf(v: StoredVersion): TransferCount {
  const digests = Object.values(v.manifest.files);
  return { files: digests.length, bytes: digests.reduce((n, d) => n + d.bytes, 0) };
}

/**
 * Brings a remote version into the local store (the caller holds the pipeline's lock), unless the
 * local store holds the same output already. Every file is checked against the manifest as it
 * arrives, and the version appears whole or not at all (LocalArtifactStore.publish).
 */
export async function fetchVersion(
  local: LocalArtifactStore,
  remote: S3Remote,
  v: StoredVersion,
): Promise<{ stored: StoredVersion; transfer: VersionTransfer }> {
  const transfer = { pipeline: v.pipeline, stage: v.stage, from: v.version };
  const here = (await local.listVersions(v.pipeline, v.stage)).find((l) => sameOutput(l.manifest, v.manifest));
  if (here) {
    const stored = await local.openVersion(v.pipeline, v.stage, here.version);
    return { stored, transfer: { ...transfer, to: here.version, created: false, moved: { files: 0, bytes: 0 }, present: filesOf(v) } };
  }
  const { schemaVersion: _schema, pipeline: _pipeline, stage: _stage, version: _version, files: _files, ...draft } = v.manifest;
  let moved: TransferCount = { files: 0, bytes: 0 };
  const stored = await local.publish(
    v.pipeline,
    v.stage,
    async (dir) => {
      moved = await remote.download(v, dir);
      return draft;
    },
    // A copy of this remote version, even where a local one shares its fingerprint (not its output).
    { duplicate: true, chooseVersion: (taken) => (taken.includes(v.version) ? Math.max(...taken) + 1 : v.version) },
  );
  return { stored, transfer: { ...transfer, to: stored.version, created: true, moved, present: { files: 0, bytes: 0 } } };
}

/** " of stage "net" v2 of pipeline "iris"", or "" for everything. */
function describeSelection(s: VersionSelection): string {
  const stage = s.stage ? ` of stage "${s.stage}"${s.version === undefined ? '' : ` v${s.version}`}` : '';
  return `${stage}${s.pipeline ? ` of pipeline "${s.pipeline}"` : ''}`;
}

/** Uploads the selected local versions the remote lacks, each checked against its hashes first. */
export async function pushVersions(
  local: LocalArtifactStore,
  remote: S3Remote,
  selection: VersionSelection,
  onVersion: (t: VersionTransfer) => void = () => {},
): Promise<VersionTransfer[]> {
  const transfers: VersionTransfer[] = [];
  for (const pipeline of selection.pipeline ? [selection.pipeline] : await local.listPipelines()) {
    const listed = (await local.inventory(pipeline)).versions
      .filter((v) => (!selection.stage || v.stage === selection.stage) && (selection.version === undefined || v.version === selection.version))
      .sort((a, b) => a.stage.localeCompare(b.stage) || a.version - b.version);
    for (const { stage, version } of listed) {
      const v = await local.openVersion(pipeline, stage, version);
      const result = await remote.upload(v);
      const transfer = { pipeline, stage, from: version, to: result.version, created: result.created, moved: result.uploaded, present: result.present };
      transfers.push(transfer);
      onVersion(transfer);
    }
  }
  if (!transfers.length) {
    throw new InputError(`nothing to push: no stored version${describeSelection(selection)} in ${local.describe(local.root)}`);
  }
  return transfers;
}

/** Downloads the selected remote versions the local store lacks. */
export async function pullVersions(
  local: LocalArtifactStore,
  remote: S3Remote,
  selection: VersionSelection,
  onVersion: (t: VersionTransfer) => void = () => {},
): Promise<VersionTransfer[]> {
  const transfers: VersionTransfer[] = [];
  for (const pipeline of selection.pipeline ? [selection.pipeline] : await remote.listPipelines()) {
    const stages = selection.stage ? [selection.stage] : await remote.listStages(pipeline);
    const release = await local.lock(pipeline);
    try {
      for (const stage of stages) {
        const versions =
          selection.version === undefined
            ? await remote.listVersions(pipeline, stage)
            : [await remote.openVersion(pipeline, stage, selection.version, { missingOk: true })].filter((v) => v !== undefined);
        for (const v of versions) {
          const { transfer } = await fetchVersion(local, remote, v);
          transfers.push(transfer);
          onVersion(transfer);
        }
      }
    } finally {
      await release();
    }
  }
  if (!transfers.length) {
    throw new InputError(`nothing to pull: no version${describeSelection(selection)} on ${remote.url}`);
  }
  return transfers;
}
