import { PipelineError } from '../errors.js';
import type { ArtifactStore, StoredCheckpoints, StoredVersion } from './store.js';

// `pipeline gc`: the store only grows (every changed config is a new version, kept so a later run
// can reuse it), so this decides what may go. What is kept, per stage: the newest `keep` versions
// (what a rerun of a recent config would reuse) and every version the newest successful run used
// (what `pipeline run` reuses now, and what `pipeline show` and its report point at). Everything
// else goes, even when an older run record names it: those records stay, as history. Also removed:
// the temporary folders and files of writes that crashed, and stale checkpoints: those whose stage
// config has a stored version (a run was killed between publishing and deleting them), those older
// than the stage's newest version (another config ran since), and those that cannot be resumed
// from. A checkpoint that the next run of its config would resume is kept, and reported. store.lock() is
// held throughout: it is refused while any run holds its lease on the pipeline, and keeps new runs
// from starting, so no run writes or reads a version or a checkpoint while it is judged; a
// pipeline in use is skipped, not waited for.

export interface GcOptions {
  /** Newest versions kept per stage, whatever references them. */
  keep: number;
  dryRun?: boolean;
}

export interface GcItem {
  path: string;
  bytes: number;
  /** Set for a version and a checkpoint; undefined for a leftover of a crashed write. */
  stage?: string;
  version?: number;
  /** Set for a checkpoint folder: its stage config, and why it goes or stays. */
  checkpoint?: { fingerprint: string; why: string };
}

export interface GcResult {
  pipeline: string;
  /** Why the pipeline was left alone (its lock is held); nothing was removed. */
  skipped?: string;
  /** The newest successful run, whose versions are all kept. */
  pinnedBy?: string;
  removed: GcItem[];
  kept: (GcItem & { why: 'newest' | 'pinned' })[];
  /** Checkpoints the next run of their config resumes from. */
  keptCheckpoints: GcItem[];
}

export async function collectGarbage(store: ArtifactStore, pipeline: string, options: GcOptions): Promise<GcResult> {
  if (!Number.isSafeInteger(options.keep) || options.keep < 0) {
    throw new PipelineError('E_USAGE', `keep must be a whole number >= 0, got ${options.keep}`);
  }
  let release: () => Promise<void>;
  try {
    release = await store.lock(pipeline);
  } catch (err) {
    if (err instanceof PipelineError && err.code === 'E_LOCKED') {
      return { pipeline, skipped: err.message, removed: [], kept: [], keptCheckpoints: [] };
    }
    throw err;
  }
  try {
    const runs = await store.listRuns(pipeline);
    const newest = runs.filter((r) => r.status === 'succeeded').at(-1);
    const pinned = new Set((newest?.stages ?? []).filter((s) => s.version !== undefined).map((s) => `${s.stage}@${s.version}`));
    const { versions, leftovers, checkpoints } = await store.inventory(pipeline);
    const result: GcResult = { pipeline, pinnedBy: newest?.id, removed: [], kept: [], keptCheckpoints: [] };
    const stages = new Map<string, typeof versions>();
    for (const v of versions) stages.set(v.stage, [...(stages.get(v.stage) ?? []), v]);
    for (const list of stages.values()) {
      list.sort((a, b) => b.version - a.version);
      for (const [rank, v] of list.entries()) {
        const item: GcItem = { path: v.dir, bytes: v.bytes, stage: v.stage, version: v.version };
        if (rank < options.keep) result.kept.push({ ...item, why: 'newest' });
        else if (pinned.has(`${v.stage}@${v.version}`)) result.kept.push({ ...item, why: 'pinned' });
        else result.removed.push(item);
      }
    }
    const order = (a: GcItem, b: GcItem) => (a.stage ?? '').localeCompare(b.stage ?? '') || (a.version ?? 0) - (b.version ?? 0);
    result.removed.sort(order);
    result.kept.sort(order);
    for (const c of checkpoints) {
      const why = staleness(c, versions);
      const item: GcItem = { path: c.path, bytes: c.bytes, stage: c.stage, checkpoint: { fingerprint: c.fingerprint, why: why ?? resumable(c) } };
      (why ? result.removed : result.keptCheckpoints).push(item);
    }
    result.removed.push(...leftovers);
    if (!options.dryRun) for (const item of result.removed) await store.discard(item.path);
    return result;
  } finally {
    await release();
  }
}

/** Why a checkpoint folder is of no use any more; undefined when a run of its config would resume it. */
function staleness(c: StoredCheckpoints, versions: StoredVersion[]): string | undefined {
  const ofStage = versions.filter((v) => v.stage === c.stage);
  const done = ofStage.find((v) => v.manifest.fingerprint === c.fingerprint);
  if (done) return `its result is stored as ${c.stage}@v${done.version}`;
  const newer = ofStage.filter((v) => Date.parse(v.manifest.timings.finishedAt) > c.modifiedMs).at(-1);
  if (newer) return `older than ${c.stage}@v${newer.version}: another config of the stage ran since`;
  if (c.loops.every((l) => l.problem)) return c.loops.length ? 'it cannot be resumed from (torn or edited)' : 'empty';
  return undefined;
}

function resumable(c: StoredCheckpoints): string {
  const loops = c.loops.filter((l) => !l.problem).map((l) => `epoch ${l.epoch}/${l.epochs} (${l.name})`);
  return `${loops.join(', ')}: the next run of that config resumes from it`;
}
