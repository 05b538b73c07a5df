import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { isSeq, parseDocument } from 'yaml';
import type { RunRecord } from '../artifacts/manifest.js';
import type { ArtifactStore } from '../artifacts/store.js';
import type { BackendChoice } from '../backend/select.js';
import { InputError, PipelineError } from '../errors.js';
import { loadPipeline, type Pipeline } from '../spec/pipeline.js';
import { didYouMeanSuffix } from '../util/suggest.js';
import { newRunId } from './run.js';

// `pipeline sweep FILE --grid stage.key=a,b --grid ...`: the cartesian product of the grids, each
// combination one ordinary `pipeline run FILE --set ...` in a child process (its own tfjs engine
// and backend, as a queue worker's would be), N at a time, every run recorded with the sweep's
// id. Runs share their common stages through the store: a stage whose fingerprint another run has
// computed, or is computing, is reused (engine/run.ts), so a teacher shared by every combination
// trains once. The leaderboard ranks the runs by one headline metric.

/** The most runs one sweep may expand to: a typo in a grid should not start a week of work. */
export const MAX_SWEEP_RUNS = 1000;

export interface GridAxis {
  /** A --set key: stage.key.path, or a top-level key such as seed. */
  key: string;
  /** Each value as written, so the run records show what was typed. */
  values: string[];
}

/** `key=v1,v2,...`: values split at the commas between YAML flow values (`[1, 2]` stays one). */
export function parseGrid(specs: string[]): GridAxis[] {
  const axes: GridAxis[] = [];
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const key = eq < 0 ? '' : spec.slice(0, eq).trim();
    if (!key || /\s/.test(key)) throw new InputError(`--grid ${spec}: expected stage.key=value1,value2,... (e.g. --grid teacher.epochs=5,10)`);
    const list = `[${spec.slice(eq + 1)}]`;
    const doc = parseDocument(list, { uniqueKeys: true });
    if (doc.errors.length || !isSeq(doc.contents)) {
      throw new InputError(`--grid ${spec}: the values are not a comma-separated list of values (${doc.errors[0]?.message.split('\n')[0] ?? 'not a list'})`);
    }
    const values = doc.contents.items.map((item) => {
      const range = (item as { range?: [number, number, number] } | null)?.range;
      return range ? list.slice(range[0], range[1]).trim() : '';
    });
    if (!values.length || values.some((v) => v === '')) throw new InputError(`--grid ${spec}: a value is empty`);
    const twice = values.find((v, i) => values.indexOf(v) !== i);
    if (twice !== undefined) throw new InputError(`--grid ${spec}: the value ${twice} is listed twice`);
    if (axes.some((a) => a.key === key)) throw new InputError(`--grid ${key}: given twice; list all its values in one --grid`);
    axes.push({ key, values });
  }
  if (!axes.length) throw new InputError('give at least one --grid stage.key=value1,value2,...');
  const runs = axes.reduce((n, a) => n * a.values.length, 1);
  if (runs > MAX_SWEEP_RUNS) {
    throw new InputError(`the grids expand to ${runs} runs (${axes.map((a) => a.values.length).join(' x ')}); at most ${MAX_SWEEP_RUNS} per sweep`);
  }
  return axes;
}

/** Every combination, the first grid varying slowest, as --set expressions. */
export function expandGrid(axes: GridAxis[]): string[][] {
  return axes.reduce<string[][]>((combos, axis) => combos.flatMap((c) => axis.values.map((v) => [...c, `${axis.key}=${v}`])), [[]]);
}

export interface MetricChoice {
  /** The stage whose headline holds it; undefined: the last stage that reports `name`. */
  stage?: string;
  name: string;
  /** Better is higher (accuracy) or lower (loss, error). */
  order: 'desc' | 'asc';
}

/** `[STAGE.]NAME`, default test_accuracy; losses and errors rank lowest first. */
export function parseMetric(spec: string | undefined, pipeline: Pipeline): MetricChoice {
  const text = spec ?? 'test_accuracy';
  const dot = text.lastIndexOf('.');
  const stage = dot > 0 ? text.slice(0, dot) : undefined;
  const name = text.slice(dot + 1);
  if (stage !== undefined && !pipeline.stages.has(stage)) {
    const known = pipeline.graph.order;
    throw new InputError(`--metric ${text}: no stage "${stage}" in ${pipeline.file}${didYouMeanSuffix(stage, known)} (stages: ${known.join(', ')})`);
  }
  if (!name) throw new InputError(`--metric ${text}: expected NAME or STAGE.NAME, e.g. test_accuracy or student.test_accuracy`);
  return { stage, name, order: /loss|error/i.test(name) ? 'asc' : 'desc' };
}

/** The metric in a run record: from its stage, or from the last stage that reports it. */
export function metricOf(record: RunRecord, metric: MetricChoice): { stage: string; value: number } | undefined {
  const stages = record.stages.filter((s) => (metric.stage === undefined || s.stage === metric.stage) && typeof s.metrics?.[metric.name] === 'number');
  const found = stages.at(-1);
  return found ? { stage: found.stage, value: found.metrics![metric.name] as number } : undefined;
}

export interface SweepRun {
  /** 1-based, in expansion order. */
  index: number;
  /** The grid values of this run, by key. */
  params: Record<string, string>;
  /** Every --set of the run: the sweep's own, then the grid's. */
  overrides: string[];
  status: 'succeeded' | 'failed' | 'interrupted';
  /** Its run record's id (absent when it failed before writing one). */
  run?: string;
  /** The backend its stages ran on. */
  backend?: string;
  durationMs: number;
  /** Place in the leaderboard; runs without the metric come last, unranked. */
  rank?: number;
  metric?: number;
  /** The stage the metric was read from, and its headline. */
  metricStage?: string;
  headline?: Record<string, unknown>;
  /** Each stage's status and version, e.g. {teacher: "reused@v1"}. */
  stages?: Record<string, string>;
  error?: string;
}

export interface SweepResult {
  schemaVersion: 1;
  id: string;
  pipeline: string;
  file: string;
  overrides: string[];
  grid: GridAxis[];
  parallel: number;
  metric: MetricChoice;
  startedAt: string;
  durationMs: number;
  /** The leaderboard: best first. */
  runs: SweepRun[];
}

export type SweepEvent =
  | { type: 'start'; run: SweepRun; total: number }
  | { type: 'end'; run: SweepRun; total: number };

export interface SweepOptions {
  /** The store the runs share: read for their records, and where the leaderboard is written. */
  store: ArtifactStore;
  /** The same store as the child `pipeline run` takes it (--store). */
  storeArg: string;
  /** The local folder in front of an s3:// store (--cache), where the children record their runs. */
  cacheArg?: string;
  grid: GridAxis[];
  /** Runs at once; default: half the CPUs (each run is one busy process), at least 1; on a queue, all. */
  parallel?: number;
  /** Each run submits its stages to the workers on this Redis (`run --executor queue`) instead of computing them. */
  redis?: string;
  metric?: string;
  backend?: BackendChoice;
  /** How to start the CLI; default: this Node with this package's bin/pipeline.js. */
  command?: string[];
  onEvent?: (event: SweepEvent) => void;
  /** Aborted: no run starts any more, and running ones are asked to stop (they publish nothing unfinished). */
  signal?: AbortSignal;
}

export function defaultParallelism(): number {
  return Math.max(1, Math.floor(availableParallelism() / 2));
}

const PIPELINE_BIN = fileURLToPath(new URL('../../../bin/pipeline.js', import.meta.url));

/** Runs the sweep; `pipeline` is the file loaded with the sweep's own --set (not the grid's). */
export async function runSweep(pipeline: Pipeline, options: SweepOptions): Promise<SweepResult> {
  const combos = expandGrid(options.grid);
  // On a queue a run's process only submits and waits: the workers bound how much runs at once.
  const parallel = options.parallel ?? (options.redis ? combos.length : defaultParallelism());
  if (!Number.isSafeInteger(parallel) || parallel < 1) throw new InputError(`--parallel ${parallel}: expected a whole number >= 1`);
  const metric = parseMetric(options.metric, pipeline);
  // Every combination is checked before any starts, so a bad value fails the sweep at once.
  for (const [i, combo] of combos.entries()) {
    try {
      await loadPipeline(pipeline.file, [...pipeline.overrides, ...combo]);
    } catch (err) {
      if (!(err instanceof PipelineError)) throw err;
      throw new InputError(`--grid: run ${i + 1} of ${combos.length} (${combo.join(' ')}) is not a valid pipeline:\n${err.message}`, { cause: err });
    }
  }
  const id = newRunId();
  const started = Date.now();
  const runs: SweepRun[] = combos.map((combo, i) => ({
    index: i + 1,
    params: Object.fromEntries(combo.map((c) => [c.slice(0, c.indexOf('=')), c.slice(c.indexOf('=') + 1)])),
    overrides: [...pipeline.overrides, ...combo],
    status: 'failed',
    durationMs: 0,
  }));
  let next = 0;
  const worker = async () => {
    while (next < runs.length && !options.signal?.aborted) {
      const run = runs[next++];
      options.onEvent?.({ type: 'start', run, total: runs.length });
      await runOne(pipeline, run, id, options);
      options.onEvent?.({ type: 'end', run, total: runs.length });
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, runs.length) }, worker));
  for (const run of runs.slice(next)) {
    run.status = 'interrupted';
    run.error = 'not started: the sweep was stopped';
  }
  for (const run of runs) {
    if (!run.run) continue;
    const record = await options.store.readRun(pipeline.name, run.run);
    const found = metricOf(record, metric);
    run.backend = record.backend;
    run.stages = Object.fromEntries(record.stages.map((s) => [s.stage, `${s.status}${s.version === undefined ? '' : `@v${s.version}`}`]));
    if (found) {
      run.metric = found.value;
      run.metricStage = found.stage;
      run.headline = record.stages.find((s) => s.stage === found.stage)?.metrics;
    }
  }
  const leaderboard = rankRuns(runs, metric);
  return {
    schemaVersion: 1,
    id,
    pipeline: pipeline.name,
    file: pipeline.file,
    overrides: pipeline.overrides,
    grid: options.grid,
    parallel,
    metric,
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    runs: leaderboard,
  };
}

/** Best first by the metric; failed runs and runs without it after, in expansion order. */
export function rankRuns(runs: SweepRun[], metric: MetricChoice): SweepRun[] {
  const sign = metric.order === 'desc' ? -1 : 1;
  const ranked = runs
    .filter((r) => r.status === 'succeeded' && r.metric !== undefined)
    .sort((a, b) => sign * (a.metric! - b.metric!) || a.index - b.index)
    .map((r, i) => ({ ...r, rank: i + 1 }));
  return [...ranked, ...runs.filter((r) => !ranked.some((x) => x.index === r.index))];
}

/** One `pipeline run` child; its JSON-lines output says which run record is its. */
async function runOne(pipeline: Pipeline, run: SweepRun, sweepId: string, options: SweepOptions): Promise<void> {
  const [command, ...prefix] = options.command ?? [process.execPath, PIPELINE_BIN];
  const args = [
    ...prefix, 'run', pipeline.file, '--store', options.storeArg, '--log-format', 'json', '--sweep-id', sweepId,
    ...(options.cacheArg ? ['--cache', options.cacheArg] : []),
    ...(options.backend ? ['--backend', options.backend] : []),
    ...(options.redis ? ['--executor', 'queue', '--redis', options.redis] : []),
    ...run.overrides.flatMap((o) => ['--set', o]),
  ];
  const started = Date.now();
  // Its own process group: a Ctrl-C reaches the sweep, which then stops each child once.
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const stop = () => signalChild(child);
  options.signal?.addEventListener('abort', stop, { once: true });
  let stderr = '';
  let buffered = '';
  let end: { run?: string; status?: string; error?: string } | undefined;
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) {
      try {
        const event = JSON.parse(line) as { event?: string; run?: string; status?: string; error?: string };
        if (event.event === 'run-end') end = event;
      } catch {
        // Not an event (a library printing on its own): nothing to learn from it.
      }
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  options.signal?.removeEventListener('abort', stop);
  run.durationMs = Date.now() - started;
  run.run = end?.run;
  run.status = code === 0 ? 'succeeded' : code === 130 || options.signal?.aborted ? 'interrupted' : 'failed';
  if (code !== 0) {
    const message = /^error: (.*)$/m.exec(stderr)?.[1] ?? end?.error ?? stderr.trim().split('\n').at(-1);
    run.error = `exit ${code}: ${message ?? 'no message'}`;
  }
}

function signalChild(child: ChildProcess): void {
  try {
    // The child's group: itself, and anything it started.
    process.kill(-child.pid!, 'SIGTERM');
  } catch {
    // Already gone.
  }
}
