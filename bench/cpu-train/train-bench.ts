import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { initWasmBackend } from '../../src/backend/wasm/init.js';
import { registerOnnxruntimeKernels } from '../../src/backend/onnxruntime/register.js';
import { sessionSettings } from '../../src/backend/onnxruntime/sessions.js';
import { buildModel, INPUT_SHAPE, MODEL_NAMES, NUM_CLASSES, trainStep, type ModelName } from './models.js';
import { runInChild } from '../child.js';

// Training throughput (samples/s) of Adam steps on random Fashion-MNIST-shaped data, per
// backend, model and batch size. Each measurement runs in its own process: the wasm thread
// count is fixed once the module starts, and a slow cpu run can be cut off by a deadline.
//
//   node dist/bench/cpu-train/train-bench.js [--out results.json] [--models seed003,big,mlp]
//     [--batches 32,128,512] [--backends cpu,wasm,wasm-2t] [--steps 10] [--cpu-budget-s 90]
//
// Backends: cpu (tfjs's JS backend), wasm (one thread), wasm-Nt (N XNNPACK threads).

interface Measurement {
  backend: string;
  threads: number;
  model: ModelName;
  batch: number;
  /** Steps timed, after warm-up steps that are not. */
  steps: number;
  stepMs: number[];
  /** batch / median step time. */
  samplesPerSec: number;
  /** batch / fastest step time (the machine is shared; this is the least disturbed figure). */
  bestSamplesPerSec: number;
  status: 'ok' | 'skipped' | 'failed';
  note?: string;
}

interface ChildRequest {
  backend: string;
  model: ModelName;
  batch: number;
  steps: number;
  warmup: number;
  /** Warm up on this many samples instead of a full batch (the cpu backend's steps are long). */
  warmupBatch?: number;
}

function parseBackend(name: string): { kind: 'cpu' | 'wasm' | 'onnxruntime'; threads: number } {
  if (name === 'cpu') return { kind: 'cpu', threads: 1 };
  const m = /^(wasm|onnxruntime)(?:-(\d+)t)?$/.exec(name);
  if (m == null) throw new Error(`unknown backend "${name}" (cpu, wasm, wasm-2t, onnxruntime, onnxruntime-1t...)`);
  const kind = m[1] as 'wasm' | 'onnxruntime';
  return { kind, threads: m[2] != null ? Number(m[2]) : kind === 'wasm' ? 1 : os.availableParallelism() };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function runChild(request: ChildRequest): Promise<Measurement> {
  const { kind, threads } = parseBackend(request.backend);
  let actualThreads = 1;
  if (kind === 'wasm') {
    actualThreads = (await initWasmBackend({ threads })).threads;
  } else if (kind === 'onnxruntime') {
    // The wasm backend single-threaded (onnxruntime cannot read shared wasm memory), MLAS on `threads`.
    registerOnnxruntimeKernels();
    sessionSettings.threads = threads;
    sessionSettings.spin = process.env.ORT_SPIN === '1';
    await initWasmBackend({ threads: 1 });
    actualThreads = threads;
  } else if (!(await tf.setBackend('cpu'))) {
    throw new Error('cpu backend failed');
  }
  const model = buildModel(request.model);
  const optimizer = tf.train.adam(1e-3);
  const x = tf.randomUniform([request.batch, ...INPUT_SHAPE]);
  const labels = tf.tensor1d(
    Array.from({ length: request.batch }, (_, i) => i % NUM_CLASSES),
    'int32',
  );
  const y = tf.oneHot(labels, NUM_CLASSES);
  const step = (xs: tf.Tensor, ys: tf.Tensor): number => {
    const start = performance.now();
    const loss = trainStep(model, optimizer, xs, ys);
    loss.dataSync();
    loss.dispose();
    return performance.now() - start;
  };
  const warmupBatch = Math.min(request.batch, request.warmupBatch ?? request.batch);
  const xw = x.slice(0, warmupBatch);
  const yw = y.slice(0, warmupBatch);
  for (let i = 0; i < request.warmup; i++) step(xw, yw);
  tf.dispose([xw, yw]);
  const stepMs: number[] = [];
  for (let i = 0; i < request.steps; i++) stepMs.push(step(x, y));
  return {
    backend: request.backend,
    threads: actualThreads,
    model: request.model,
    batch: request.batch,
    steps: request.steps,
    stepMs,
    samplesPerSec: (request.batch * 1000) / median(stepMs),
    bestSamplesPerSec: (request.batch * 1000) / Math.min(...stepMs),
    status: 'ok',
  };
}

async function spawnChild(request: ChildRequest, deadlineMs: number): Promise<Measurement> {
  const outcome = await runInChild<Measurement>(fileURLToPath(import.meta.url), request, '{"backend"', deadlineMs);
  if (outcome.ok) return outcome.result;
  return {
    ...request,
    threads: parseBackend(request.backend).threads,
    stepMs: [],
    samplesPerSec: 0,
    bestSamplesPerSec: 0,
    status: 'failed',
    note: outcome.why,
  };
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function list<T extends string>(value: string | undefined, fallback: readonly T[]): T[] {
  return value == null ? [...fallback] : (value.split(',').filter(Boolean) as T[]);
}

function formatTable(results: Measurement[], backends: string[], models: ModelName[], batches: number[]): string {
  const header = ['model', 'batch', ...backends.map((b) => `${b} (samples/s)`)];
  const rows = [header];
  for (const model of models) {
    for (const batch of batches) {
      const row = [model, String(batch)];
      for (const backend of backends) {
        const r = results.find((m) => m.model === model && m.batch === batch && m.backend === backend);
        if (r == null) row.push('-');
        else if (r.status !== 'ok') row.push(r.status === 'skipped' ? `(${r.note ?? 'skipped'})` : 'failed');
        else row.push(`${r.samplesPerSec.toFixed(r.samplesPerSec < 10 ? 2 : 0)} (best ${r.bestSamplesPerSec.toFixed(r.bestSamplesPerSec < 10 ? 2 : 0)})`);
      }
      rows.push(row);
    }
  }
  const widths = header.map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ')).join('\n');
}

async function main(args: string[]): Promise<void> {
  const childArg = argValue(args, '--child');
  if (childArg != null) {
    const result = await runChild(JSON.parse(childArg) as ChildRequest);
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const models = list<ModelName>(argValue(args, '--models'), ['seed003', 'big', 'mlp']);
  for (const m of models) if (!MODEL_NAMES.includes(m)) throw new Error(`unknown model ${m}`);
  const batches = list(argValue(args, '--batches'), ['32', '128', '512']).map(Number);
  const backends = list(argValue(args, '--backends'), ['cpu', 'wasm', 'wasm-2t']);
  backends.forEach(parseBackend);
  const steps = Number(argValue(args, '--steps') ?? 10);
  const cpuBudgetMs = Number(argValue(args, '--cpu-budget-s') ?? 90) * 1000;
  const out = resolve(argValue(args, '--out') ?? 'bench/cpu-train/results.json');

  const results: Measurement[] = [];
  for (const model of models) {
    // The cpu backend needs seconds to minutes per step: one timed step (plus one warm-up) per
    // batch size, smallest first, and a batch size is skipped when the previous one's
    // per-sample time says it would not finish within the budget.
    let cpuMsPerSample: number | null = null;
    for (const batch of batches) {
      for (const backend of backends) {
        const isCpu = backend === 'cpu';
        if (isCpu && cpuMsPerSample != null && cpuMsPerSample * batch > cpuBudgetMs) {
          results.push({
            backend,
            threads: 1,
            model,
            batch,
            steps: 0,
            stepMs: [],
            samplesPerSec: 0,
            bestSamplesPerSec: 0,
            status: 'skipped',
            note: Number.isFinite(cpuMsPerSample) ? `~${(1000 / cpuMsPerSample).toFixed(1)} est.` : 'over budget',
          });
          continue;
        }
        const request: ChildRequest = isCpu
          ? { backend, model, batch, steps: 1, warmup: 1, warmupBatch: 2 }
          : { backend, model, batch, steps, warmup: 2 };
        const r = await spawnChild(request, isCpu ? cpuBudgetMs : 10 * 60 * 1000);
        if (isCpu) {
          if (r.status === 'ok') {
            cpuMsPerSample = r.stepMs[0] / batch;
          } else {
            // Over budget at this size: larger ones cannot do better.
            cpuMsPerSample = Infinity;
          }
        }
        results.push(r);
        console.error(
          `${model} b${batch} ${backend}: ${r.status === 'ok' ? `${r.samplesPerSec.toFixed(1)} samples/s` : `${r.status} ${r.note ?? ''}`}`,
        );
      }
    }
  }
  const table = formatTable(results, backends, models, batches);
  console.log(table);
  const report = {
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpusUsable: os.availableParallelism(),
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      node: process.version,
      loadavg: os.loadavg(),
    },
    tfjs: tf.version.tfjs,
    stepsTimed: steps,
    results,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(report, null, 2) + '\n');
  console.log(`\nwrote ${out}`);
}

await main(process.argv.slice(2));
