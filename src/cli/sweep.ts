import { writeFile } from 'node:fs/promises';
import type { BackendChoice } from '../backend/select.js';
import { parseGrid, runSweep, type SweepResult, type SweepRun } from '../engine/sweep.js';
import { EXIT_OK, EXIT_STAGE_FAILED, InputError } from '../errors.js';
import { formatNumber, formatTable } from '../report/terminal.js';
import { loadPipeline } from '../spec/pipeline.js';
import { openStore, storeText } from './commands.js';

// `pipeline sweep FILE --grid stage.key=a,b ... [--parallel N] [--metric M] [--out FILE]`: the
// runs are in engine/sweep.ts; this prints their progress and the leaderboard.

export interface SweepArgs {
  file: string;
  set: string[];
  store?: string;
  cache: string;
  grid: string[];
  parallel?: number;
  metric?: string;
  backend?: BackendChoice;
  out?: string;
  executor: 'local' | 'queue';
  redis?: string;
}

const print = (text = '') => process.stdout.write(`${text}\n`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
const params = (run: SweepRun) => Object.entries(run.params).map(([k, v]) => `${k}=${v}`).join(' ');

export async function sweepCommand(args: SweepArgs): Promise<number> {
  if (args.executor === 'queue' && !args.redis) throw new InputError('--executor queue needs --redis redis://host:port (the Redis the workers take jobs from)');
  const grid = parseGrid(args.grid);
  const pipeline = await loadPipeline(args.file, args.set);
  const store = await openStore(args, pipeline);
  const controller = new AbortController();
  let stops = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++stops > 1) process.exit(130);
    process.stderr.write(`\n${signal}: no further run starts; running ones stop after their current batch (again to abort at once)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const result = await runSweep(pipeline, {
    store,
    storeArg: storeText(args.store, pipeline),
    cacheArg: args.cache,
    grid,
    parallel: args.parallel,
    metric: args.metric,
    backend: args.backend,
    ...(args.executor === 'queue' ? { redis: args.redis } : {}),
    signal: controller.signal,
    onEvent: (event) => {
      const { run, total } = event;
      const at = `[${run.index}/${total}]`;
      if (event.type === 'start') print(`${at} started: ${params(run)}`);
      else if (run.status === 'succeeded') print(`${at} succeeded in ${seconds(run.durationMs)} (run ${run.run})`);
      else print(`${at} ${run.status} after ${seconds(run.durationMs)}: ${run.error}`);
    },
  });
  let path: string;
  if (args.out) await writeFile((path = args.out), `${JSON.stringify(result, null, 2)}\n`);
  else path = await store.writeSweep(pipeline.name, result.id, result);
  print();
  for (const line of formatLeaderboard(result)) print(line);
  print(`leaderboard: ${store.describe(path)}`);
  return result.runs.every((r) => r.status === 'succeeded') ? EXIT_OK : EXIT_STAGE_FAILED;
}

export function formatLeaderboard(result: SweepResult): string[] {
  const { metric } = result;
  const name = `${metric.stage ? `${metric.stage}.` : ''}${metric.name}`;
  const rows = result.runs.map((run) => [
    run.rank === undefined ? '-' : String(run.rank),
    ...result.grid.map((axis) => run.params[axis.key]),
    run.metric === undefined ? '-' : formatNumber(run.metric),
    run.status,
    seconds(run.durationMs),
    run.stages ? Object.entries(run.stages).map(([s, v]) => `${s}:${v}`).join(' ') : (run.error ?? ''),
    run.run ?? '-',
  ]);
  return [
    `sweep ${result.id} of ${result.pipeline}: ${result.runs.length} runs, ${result.parallel} at a time, ` +
      `${seconds(result.durationMs)}; ranked by ${name} (${metric.order === 'desc' ? 'highest' : 'lowest'} first)`,
    ...formatTable(['rank', ...result.grid.map((a) => a.key), name, 'status', 'time', 'stages', 'run'], rows).map((l) => `  ${l}`),
  ];
}
