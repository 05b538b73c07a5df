import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { DataRef, InputRef, RunRecord, StageRunRecord } from '../artifacts/manifest.js';
import type { ArtifactStore, StoredVersion } from '../artifacts/store.js';
import { selectBackend, type BackendChoice, type BackendSelection } from '../backend/select.js';
import { hashDataSource, loadDataset } from '../data/load.js';
import type { LoadedDataset } from '../data/types.js';
import { DivergenceError, InputError, PipelineError, StageError } from '../errors.js';
import type { Pipeline, ResolvedStage } from '../spec/pipeline.js';
import { sha256File } from '../util/hash.js';
import { didYouMeanSuffix } from '../util/suggest.js';
import { shellQuote } from '../util/text.js';
import { loadModelOutput } from '../stages/model-output.js';
import type { StageContext, StageInput } from '../stages/types.js';
import { withSeededMathRandom } from '../random.js';
import { TFJS_VERSION, TOOL_VERSION } from '../version.js';
import { StageCheckpoints, type SavedEpoch } from './checkpoints.js';
import { explainDifference, fingerprintStage, type Fingerprint } from './fingerprint.js';
import type { RunReporter } from './reporter.js';

// Plan, then run (dvc's reproduce): the plan computes every stage's fingerprint up front (a
// fingerprint depends on upstream fingerprints, not on upstream outputs, so no stage has to run to
// know whether another is cached) and looks each up in the store; the run executes the misses in
// graph order, publishing each as a new version.

export interface StagePlan {
  stage: string;
  kind: string;
  fingerprint: Fingerprint;
  /** The stored version that will be reused, unless forced. */
  cached?: StoredVersion;
  action: 'reuse' | 'run';
  reason: string;
  dataRefs: Record<string, DataRef>;
}

export interface PlanOptions {
  store: ArtifactStore;
  force?: boolean;
  /**
   * Only these stages (`--only`), as one step of a pipeline that a scheduler (an Argo task, a queue
   * worker) runs alone: the plan holds them and the stages they read, which must be in the store
   * already (an InputError names what is missing and the command that makes it). --force reruns
   * the selected stages only.
   */
  only?: string[];
}

export async function planPipeline(pipeline: Pipeline, options: PlanOptions): Promise<StagePlan[]> {
  const plans = new Map<string, StagePlan>();
  const fingerprints = new Map<string, Fingerprint>();
  const dataHashes = new Map<string, DataRef>();
  const selected = options.only?.length ? selectStages(pipeline, options.only) : undefined;
  // What a selection needs besides itself: the stages it reads. Their own inputs are not needed:
  // a stored version is found by fingerprint, and fingerprints need no outputs.
  const inputs = new Set([...(selected ?? [])].flatMap((s) => pipeline.stages.get(s)!.deps).filter((d) => !selected!.has(d)));
  const missing: string[] = [];
  for (const name of pipeline.graph.order) {
    const stage = pipeline.stages.get(name)!;
    const dataRefs: Record<string, DataRef> = {};
    for (const dataName of stage.data) {
      if (!dataHashes.has(dataName)) {
        dataHashes.set(
          dataName,
          await hashDataSource(dataName, pipeline.data[dataName], { baseDir: pipeline.baseDir, seed: pipeline.seed }),
        );
      }
      dataRefs[dataName] = dataHashes.get(dataName)!;
    }
    const fingerprint = fingerprintStage({
      kind: stage.kind.kind,
      config: stage.config,
      stages: Object.fromEntries(stage.deps.map((d) => [d, fingerprints.get(d)!.fingerprint])),
      data: Object.fromEntries(Object.entries(dataRefs).map(([k, v]) => [k, v.hash])),
      files: await hashExternalFiles(stage, pipeline.baseDir),
      seed: pipeline.seed,
    });
    fingerprints.set(name, fingerprint);
    if (selected && !selected.has(name) && !inputs.has(name)) continue;
    const upstreamRuns = stage.deps.filter((d) => plans.get(d)?.action === 'run');
    let cached: StoredVersion | undefined;
    let reason: string;
    if (inputs.has(name)) {
      cached = await options.store.findByFingerprint(pipeline.name, name, fingerprint.fingerprint);
      if (!cached) missing.push(name);
      reason = cached ? `same fingerprint as v${cached.version} (input of --only)` : 'not in the store';
    } else if (options.force) {
      reason = 'forced (--force)';
    } else {
      cached = await options.store.findByFingerprint(pipeline.name, name, fingerprint.fingerprint);
      if (cached) reason = `same fingerprint as v${cached.version}`;
      else if (upstreamRuns.length) reason = `input stage ${upstreamRuns.map((d) => `"${d}"`).join(', ')} will run`;
      else reason = await explainMiss(options.store, pipeline.name, name, fingerprint, stage.config);
    }
    plans.set(name, {
      stage: name,
      kind: stage.kind.kind,
      fingerprint,
      cached,
      action: cached ? 'reuse' : 'run',
      reason,
      dataRefs,
    });
  }
  if (missing.length) throw missingInputs(pipeline, options, missing, selected!, fingerprints);
  return [...plans.values()];
}

function selectStages(pipeline: Pipeline, only: string[]): Set<string> {
  const known = pipeline.graph.order;
  for (const name of only) {
    if (!pipeline.stages.has(name)) {
      throw new InputError(
        `--only ${name}: ${pipeline.file} has no stage "${name}"${didYouMeanSuffix(name, known)} (stages: ${known.join(', ')})`,
      );
    }
  }
  return new Set(only);
}

/** Names each missing input, what reads it, and the command that puts it in the store. */
function missingInputs(pipeline: Pipeline, options: PlanOptions, missing: string[], selected: Set<string>, fps: Map<string, Fingerprint>): InputError {
  const store = options.store;
  const lines = missing.map((name) => {
    const readers = [...selected].filter((s) => pipeline.stages.get(s)!.deps.includes(name));
    return (
      `stage "${name}" (read by ${readers.map((r) => `"${r}"`).join(', ')}) has no version with fingerprint ` +
      `${fps.get(name)!.fingerprint.slice(0, 12)} in ${store.describe(join(store.root, pipeline.name, name))}`
    );
  });
  const command = [
    'pipeline', 'run', relative(process.cwd(), pipeline.file) || pipeline.file,
    ...missing.flatMap((m) => ['--only', m]),
    '--store', store.describe(store.root),
    ...pipeline.overrides.flatMap((o) => ['--set', o]),
  ].map(shellQuote).join(' ');
  return new InputError(
    `--only ${[...selected].join(' ')}: ${lines.join('; ')}. Its input stages must be in the store first: run \`${command}\`` +
      ' (or the whole pipeline, without --only)',
    { code: 'E_MISSING_INPUT' },
  );
}

async function hashExternalFiles(stage: ResolvedStage, baseDir: string): Promise<Record<string, string>> {
  const files = (await stage.kind.externalFiles?.(stage.config, baseDir)) ?? [];
  const hashes: Record<string, string> = {};
  for (const file of files) {
    try {
      hashes[relative(baseDir, file) || file] = (await sha256File(file)).sha256;
    } catch {
      throw new InputError(`stage "${stage.name}" reads ${file}, which cannot be read`);
    }
  }
  return hashes;
}

async function explainMiss(
  store: ArtifactStore,
  pipeline: string,
  stage: string,
  fp: Fingerprint,
  config: Record<string, unknown>,
): Promise<string> {
  const latest = (await store.listVersions(pipeline, stage)).at(-1);
  if (!latest) return 'never ran';
  const reasons = explainDifference({ details: fp.details, config }, { details: latest.manifest.fingerprintDetails, config: latest.manifest.config });
  return reasons.length ? `${reasons.join('; ')} since v${latest.version}` : `differs from v${latest.version}`;
}

export interface RunOptions extends PlanOptions {
  /** From --backend; overrides the file's `backend`. */
  backend?: BackendChoice;
  reporter: RunReporter;
  /** Set by the CLI on Ctrl-C: stages stop at the next batch and nothing is published. */
  stopRequested?: () => boolean;
  /** The sweep this run is one of (`pipeline sweep`), kept in the run record. */
  sweep?: string;
  /** false (--no-resume): a stage that an interrupted run left checkpoints of trains from the start. */
  resume?: boolean;
}

/** A run's id, sortable by time: 20261124T101500Z-3fa2c1. */
export function newRunId(at = Date.now()): string {
  return `${new Date(at).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

/** A run's record as it starts (status running, no stages yet): local runs and queued submissions alike. */
export function newRunRecord(
  pipeline: Pipeline,
  run: { id: string; started: number; backend: string; force?: boolean; only?: string[]; sweep?: string },
): RunRecord {
  return {
    schemaVersion: 1,
    id: run.id,
    pipeline: pipeline.name,
    file: relative(process.cwd(), pipeline.file) || pipeline.file,
    status: 'running',
    startedAt: new Date(run.started).toISOString(),
    seed: pipeline.seed,
    backend: run.backend,
    overrides: pipeline.overrides,
    force: Boolean(run.force),
    ...(run.only?.length ? { only: run.only } : {}),
    ...(run.sweep ? { sweep: run.sweep } : {}),
    stages: [],
    host: hostname(),
    pid: process.pid,
  };
}

// Runs of one pipeline may share a store at the same time (a sweep, Argo tasks, two terminals):
// each holds a shared lease (gc keeps out), and a stage to compute is locked by fingerprint, so of
// two runs that need the same version one computes it and the other waits, then reuses it.
export async function runPipeline(pipeline: Pipeline, options: RunOptions): Promise<RunRecord> {
  const { store, reporter } = options;
  const started = Date.now();
  const id = newRunId(started);
  const release = await store.lockShared(pipeline.name, id, (owner) =>
    reporter.warning(`${store.describe(join(store.root, pipeline.name))} is held by ${owner}; this run starts when it is done`),
  );
  const record = newRunRecord(pipeline, { id, started, backend: options.backend ?? pipeline.backend, force: options.force, only: options.only, sweep: options.sweep });
  let recordPath: string | undefined;
  try {
    recordPath = await store.writeRun(record);
    const plans = await planPipeline(pipeline, options);
    record.stages = plans.map((p) => ({ stage: p.stage, kind: p.kind, status: 'pending', fingerprint: p.fingerprint.fingerprint, reason: p.reason }));
    reporter.runStart(pipeline, plans);
    const published = new Map<string, StoredVersion>();
    const datasets = new Map<string, Promise<LoadedDataset>>();
    const readByAnother = new Set([...pipeline.stages.values()].flatMap((s) => s.deps));
    let backend: BackendSelection | undefined;
    const reuse = async (plan: StagePlan, entry: StageRunRecord, cached: StoredVersion) => {
      // A remote store's files come down only where this run reads them: a stage no other stage
      // reads (the run's result), one with a publish step, and (runStage) a running stage's inputs.
      const files = !readByAnother.has(plan.stage) || Boolean(pipeline.stages.get(plan.stage)!.kind.publish);
      const version = await store.materialize(cached, { files });
      published.set(plan.stage, version);
      // Left by a run killed between publishing this version and deleting its checkpoints.
      await store.checkpoints(pipeline.name, plan.stage, plan.fingerprint.fingerprint).clear();
      Object.assign(entry, { status: 'reused', version: version.version, metrics: version.manifest.metrics, reason: plan.reason });
      reporter.stageReused(plan, version);
      await publishOutside(pipeline, plan.stage, version, entry, options);
    };
    for (const [index, plan] of plans.entries()) {
      const entry = record.stages[index];
      // A stage with a publish step is locked even when reused, so that two runs never copy one
      // version outside the store twice.
      const lock = plan.action === 'run' || pipeline.stages.get(plan.stage)!.kind.publish;
      const unlock = lock
        ? await store.lockStage(pipeline.name, plan.stage, plan.fingerprint.fingerprint, `run ${id}`, (owner) =>
            reporter.observerFor(plan.stage).info(`waiting for ${owner}: it is computing this stage with the same fingerprint`),
          )
        : async () => {};
      try {
        if (plan.cached) {
          await reuse(plan, entry, plan.cached);
          continue;
        }
        const meanwhile = options.force ? undefined : await store.findByFingerprint(pipeline.name, plan.stage, plan.fingerprint.fingerprint);
        if (meanwhile) {
          const reason = `same fingerprint as v${meanwhile.version}, published meanwhile by run ${meanwhile.manifest.runId}`;
          await reuse({ ...plan, action: 'reuse', cached: meanwhile, reason }, entry, meanwhile);
          continue;
        }
        // Only now, when something must run, is a backend loaded: a fully cached run needs none.
        if (!backend) {
          backend = await selectBackend(options.backend ?? pipeline.backend);
          record.backend = backend.name;
          reporter.backendSelected(backend);
        }
        const stageStarted = Date.now();
        reporter.stageStart(plan, index, plans.length);
        const checkpoints = new StageCheckpoints(
          store.checkpoints(pipeline.name, plan.stage, plan.fingerprint.fingerprint),
          plan.stage,
          (path) => store.describe(path),
          (message) => reporter.warning(message),
        );
        try {
          const version = await runStage(pipeline, plan, { store, backend, published, datasets, options, runId: record.id, checkpoints });
          published.set(plan.stage, version);
          Object.assign(entry, {
            status: 'ran',
            version: version.version,
            durationMs: Date.now() - stageStarted,
            metrics: version.manifest.metrics,
          });
          reporter.stageDone(plan, version, Date.now() - stageStarted);
          await publishOutside(pipeline, plan.stage, version, entry, options);
        } catch (err) {
          Object.assign(entry, { status: 'failed', durationMs: Date.now() - stageStarted, error: (err as Error).message });
          for (const rest of record.stages.slice(index + 1)) rest.status = 'skipped';
          reporter.stageFailed(plan, err as Error, Date.now() - stageStarted);
          // A diverging loop names no stage: it gets one like any error that is not the user's to fix.
          throw err instanceof PipelineError && !(err instanceof DivergenceError)
            ? err
            : new StageError(plan.stage, `stage "${plan.stage}" failed: ${(err as Error).message}`, { cause: err });
        } finally {
          const resumed = checkpoints.resumed();
          if (resumed) entry.resumedFromEpoch = resumed;
        }
      } finally {
        await unlock();
      }
    }
    record.status = 'succeeded';
    return record;
  } catch (err) {
    record.status = err instanceof InterruptedError ? 'interrupted' : 'failed';
    record.error = (err as Error).message;
    throw err;
  } finally {
    record.finishedAt = new Date().toISOString();
    record.durationMs = Date.now() - started;
    try {
      recordPath = await store.writeRun(record);
    } catch (err) {
      // On a full disk this fails too; the run's own error (thrown on) is what the user must see.
      reporter.warning(`the record of run ${record.id} could not be written: ${(err as Error).message}`);
      recordPath = undefined;
    }
    const reportPath = recordPath && (await writeReport(store, record, reporter));
    reporter.runEnd(record, recordPath ? store.describe(recordPath) : '(not written)', reportPath ? store.describe(reportPath) : undefined);
    await release();
  }
}

/** The run's HTML report; failing to write it is a warning, never the run's failure. */
async function writeReport(store: ArtifactStore, record: RunRecord, reporter: RunReporter): Promise<string | undefined> {
  try {
    return await (await import('../report/html.js')).writeRunReport(store, record);
  } catch (err) {
    reporter.warning(
      `the report of run ${record.id} could not be written: ${(err as Error).message}; ` +
        `rebuild it with \`pipeline report ${record.id} --pipeline ${record.pipeline}\``,
    );
    return undefined;
  }
}

/** A kind's publish step (export's serving copy), after the version is safely in the store. */
async function publishOutside(
  pipeline: Pipeline,
  name: string,
  version: StoredVersion,
  entry: StageRunRecord,
  options: RunOptions,
): Promise<void> {
  const stage = pipeline.stages.get(name)!;
  if (!stage.kind.publish) return;
  entry.published = await stage.kind.publish(version, stage.config, {
    pipeline: pipeline.name,
    stage: name,
    storeRoot: options.store.root,
    baseDir: pipeline.baseDir,
    observer: options.reporter.observerFor(name),
  });
}

export class InterruptedError extends PipelineError {
  constructor(stage: string, kept?: SavedEpoch) {
    super(
      'E_INTERRUPTED',
      kept
        ? `interrupted during stage "${stage}" after epoch ${kept.epoch}/${kept.epochs} (${kept.loop}): nothing of it was ` +
            'published, its checkpoint is kept; run the same command again to resume from it (--no-resume starts over)'
        : `interrupted during stage "${stage}": nothing of it was published; run the same command again to redo it`,
      130,
    );
  }
}

interface StageRunState {
  store: ArtifactStore;
  backend: BackendSelection;
  published: Map<string, StoredVersion>;
  datasets: Map<string, Promise<LoadedDataset>>;
  options: RunOptions;
  runId: string;
  checkpoints: StageCheckpoints;
}

/**
 * Runs a stage into a new version. Its training loops checkpoint every epoch; the checkpoints stay
 * when it is interrupted or fails (a rerun of the same config resumes from them) and go once the
 * version is published, or when training diverged (a rerun would only diverge again).
 */
async function runStage(pipeline: Pipeline, plan: StagePlan, state: StageRunState): Promise<StoredVersion> {
  const area = state.store.checkpoints(pipeline.name, plan.stage, plan.fingerprint.fingerprint);
  if (state.options.resume === false) await area.clear();
  let version: StoredVersion;
  try {
    version = await publishStage(pipeline, plan, state);
  } catch (err) {
    if (err instanceof DivergenceError) await area.clear();
    throw err;
  }
  await area.clear();
  return version;
}

async function publishStage(pipeline: Pipeline, plan: StagePlan, state: StageRunState): Promise<StoredVersion> {
  const stage = pipeline.stages.get(plan.stage)!;
  const stopRequested = state.options.stopRequested ?? (() => false);
  for (const dep of stage.deps) state.published.set(dep, await state.store.materialize(state.published.get(dep)!, { files: true }));
  const startedAt = new Date();
  return state.store.publish(pipeline.name, plan.stage, async (outDir) => {
    const ctx: StageContext = {
      pipeline: pipeline.name,
      stage: plan.stage,
      seed: pipeline.seed,
      baseDir: pipeline.baseDir,
      backend: state.backend,
      outDir,
      data: (name) => {
        if (!state.datasets.has(name)) {
          state.datasets.set(name, loadDataset(name, pipeline.data[name], { baseDir: pipeline.baseDir, seed: pipeline.seed }));
        }
        return state.datasets.get(name)!;
      },
      input: async (name): Promise<StageInput> => {
        const version = state.published.get(name);
        if (!version) throw new Error(`internal: stage "${name}" has not run before "${plan.stage}"`);
        const metrics = version.manifest.metrics;
        return { version, metrics, loadModel: () => loadModelOutput(version.dir) };
      },
      observer: state.options.reporter.observerFor(plan.stage),
      shouldStop: stopRequested,
      checkpoint: (name) => state.checkpoints.slot(name),
    };
    const result = await withSeededMathRandom(pipeline.seed, `stage:${plan.stage}`, () => stage.kind.run(ctx, stage.config));
    if (stopRequested()) throw new InterruptedError(plan.stage, state.checkpoints.latest);
    await writeFile(join(outDir, 'metrics.json'), `${JSON.stringify(result.metrics, null, 2)}\n`);
    const finishedAt = new Date();
    const stages: Record<string, InputRef> = Object.fromEntries(
      stage.deps.map((d) => {
        const v = state.published.get(d)!;
        return [d, { stage: d, version: v.version, fingerprint: v.manifest.fingerprint }];
      }),
    );
    return {
      kind: stage.kind.kind,
      fingerprint: plan.fingerprint.fingerprint,
      fingerprintDetails: plan.fingerprint.details,
      config: stage.config,
      inputs: { stages, data: plan.dataRefs },
      seed: pipeline.seed,
      backend: state.backend.name,
      libraries: {
        'tfjs-pipeline': TOOL_VERSION,
        '@tensorflow/tfjs-core': TFJS_VERSION,
        node: process.version,
        ...(state.backend.details.adapter ? { adapter: state.backend.details.adapter } : {}),
      },
      timings: {
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        durationMs: finishedAt.getTime() - startedAt.getTime(),
      },
      runId: state.runId,
      metrics: result.headline,
      ...(state.checkpoints.resumed() ? { resumedFromEpoch: state.checkpoints.resumed() } : {}),
    };
  }, { duplicate: Boolean(state.options.force) });
}
