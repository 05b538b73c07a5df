import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, hostname, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { BACKEND_CHOICES, type BackendChoice } from '../../src/backend/select.js';
import { parseGrid, runSweep, type SweepResult } from '../../src/engine/sweep.js';
import { formatTable } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';

// How much does running a sweep's runs side by side buy? Times one 12-run sweep of the quickstart
// (3 learning rates x 4 seeds: nothing shared, every run trains, evaluates and exports; all pass
// the export gate, where a low rate with few epochs would fail it and end its run early) at
// each --parallel level, each in a fresh store, through the same runSweep as `pipeline sweep`, and
// prints the speed-up over one at a time. Each run is its own Node process with its own backend,
// so the ceiling is the machine's cores (recorded in the JSON, with the load average: on a shared
// machine other work takes cores too).
//
//   node dist/bench/scale/sweep-bench.js [--levels 1,2,4] [--file pipelines/quickstart.yaml]
//     [--grid KEY=V1,V2]... [--set KEY=VALUE]... [--backend B] [--out FILE.json]

const ROOT = new URL('../../..', import.meta.url).pathname;

const { values } = parseArgs({
  options: {
    file: { type: 'string', default: join(ROOT, 'pipelines', 'quickstart.yaml') },
    grid: {
      type: 'string',
      multiple: true,
      default: ['digits-mlp.optimizer.adam.learningRate=0.003,0.002,0.001', 'seed=1,2,3,4'],
    },
    set: { type: 'string', multiple: true, default: [] as string[] },
    levels: { type: 'string', default: '1,2,4' },
    backend: { type: 'string' },
    out: { type: 'string' },
  },
});

const levels = values.levels.split(',').map(Number);
if (levels.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new Error(`--levels ${values.levels}: whole numbers >= 1, e.g. 1,2,4`);
if (values.backend !== undefined && !(BACKEND_CHOICES as readonly string[]).includes(values.backend)) {
  throw new Error(`--backend ${values.backend}: expected one of ${BACKEND_CHOICES.join(', ')}`);
}
const grid = parseGrid(values.grid);
const pipeline = await loadPipeline(values.file, values.set);

interface Level {
  parallel: number;
  wallSeconds: number;
  speedup: number;
  succeeded: number;
  /** Mean wall time of one run at this level (a run slows down as more share the cores). */
  meanRunSeconds: number;
  loadavgBefore: number[];
  best: { params: Record<string, string>; metric?: number };
  sweep: SweepResult;
}

const results: Level[] = [];
for (const parallel of levels) {
  const dir = await mkdtemp(join(tmpdir(), `sweep-bench-${parallel}-`));
  const store = new LocalArtifactStore(dir);
  const before = loadavg();
  process.stderr.write(`--parallel ${parallel}: ${grid.reduce((n, a) => n * a.values.length, 1)} runs in ${dir}\n`);
  const started = Date.now();
  const sweep = await runSweep(pipeline, {
    store,
    storeArg: dir,
    grid,
    parallel,
    backend: values.backend as BackendChoice | undefined,
    onEvent: (e) => e.type === 'end' && process.stderr.write(`  [${e.run.index}/${e.total}] ${e.run.status} in ${(e.run.durationMs / 1000).toFixed(1)}s\n`),
  });
  const wallSeconds = (Date.now() - started) / 1000;
  const ok = sweep.runs.filter((r) => r.status === 'succeeded');
  results.push({
    parallel,
    wallSeconds,
    speedup: 0,
    succeeded: ok.length,
    meanRunSeconds: ok.reduce((s, r) => s + r.durationMs, 0) / 1000 / Math.max(1, ok.length),
    loadavgBefore: before,
    best: { params: sweep.runs[0].params, metric: sweep.runs[0].metric },
    sweep,
  });
  await rm(dir, { recursive: true, force: true });
}
const base = results.find((r) => r.parallel === 1)?.wallSeconds ?? results[0].wallSeconds;
for (const r of results) r.speedup = base / r.wallSeconds;

const machine = {
  host: hostname(),
  cpus: cpus().length,
  availableParallelism: availableParallelism(),
  cpuModel: cpus()[0]?.model,
  node: process.version,
  loadavgAfter: loadavg(),
};
const runs = results[0].sweep.runs.length;
console.log(`\n${runs}-run sweep of ${pipeline.name} (${grid.map((a) => `${a.key}=${a.values.join(',')}`).join(' x ')})`);
console.log(`machine: ${machine.cpus} CPUs (${machine.cpuModel}), load average before each level shown\n`);
for (const line of formatTable(
  ['parallel', 'wall', 'speed-up', 'runs ok', 'mean run', 'load before', 'best test_accuracy'],
  results.map((r) => [
    String(r.parallel),
    `${r.wallSeconds.toFixed(1)}s`,
    `${r.speedup.toFixed(2)}x`,
    `${r.succeeded}/${runs}`,
    `${r.meanRunSeconds.toFixed(1)}s`,
    r.loadavgBefore[0].toFixed(2),
    `${r.best.metric?.toFixed(4) ?? '-'} (${Object.values(r.best.params).join(', ')})`,
  ]),
)) console.log(line);

const out = values.out ?? join(ROOT, 'bench', 'scale', 'results', `sweep-${hostname()}-${machine.cpus}cores.json`);
await mkdir(dirname(out), { recursive: true });
await writeFile(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), file: values.file, grid, overrides: values.set, machine, levels: results }, null, 2)}\n`,
);
console.log(`\nwritten: ${out}`);
