import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import autocannon from 'autocannon';
import { BACKEND_CHOICES, selectBackend, type BackendChoice } from '../../src/backend/select.js';
import { parseIdx } from '../../src/data/idx.js';
import { applyPreprocessing } from '../../src/data/normalize.js';
import { readSourceFile } from '../../src/data/source.js';
import type { Preprocessing } from '../../src/data/types.js';
import { createRng } from '../../src/random.js';
import { readGraphModelArtifacts } from '../../src/models/io.js';

// Throughput and latency of `pipeline serve` on loopback: requests/s, p50 and p99 at several
// concurrencies, for the server with and without batching, next to the in-process call the
// server wraps (predict + await data, batch 1). The server runs as its own process (the real
// CLI), autocannon drives it from this one, so the load generator does not share the server's
// event loop. Each request is TF Serving's row format with one example (--instances).
//
//   node dist/bench/serve/serve-bench.js --model-base DIR --model NAME [--concurrency 1,16,64]
//     [--duration 10] [--warmup 5] [--backend auto] [--max-batch-size 32] [--batch-timeout-micros 0]
//     [--instances 1] [--data /usr/share/datasets/fashion-mnist | none] [--out FILE.json]

const ROOT = new URL('../../..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin', 'pipeline.js');
const FASHION_IMAGES = 't10k-images-idx3-ubyte.gz';

interface Row {
  mode: string;
  concurrency: number;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
  /** Mean rows per model execution, from the server's batch-size metric. */
  rowsPerRun?: number;
  /** Connections that had an answer before the measured window (all of them: steady state). */
  connectionsServedBeforeMeasuring?: number;
}

/** Linear interpolation between closest ranks (numpy's default). */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function modelCard(dir: string): Promise<{ shape: number[]; preprocessing: Preprocessing; parameters?: number }> {
  const card = JSON.parse(await readFile(join(dir, 'model-card.json'), 'utf8'));
  const input = Object.values(card.signature.inputs)[0] as { shape: number[] };
  const { note: _note, ...preprocessing } = card.preprocessing ?? { kind: 'none' };
  return { shape: input.shape, preprocessing: preprocessing as Preprocessing, parameters: card.parameters };
}

/** The first test images of Fashion-MNIST, preprocessed as the card says; seeded noise otherwise. */
async function examples(count: number, shape: number[], preprocessing: Preprocessing, dataDir: string): Promise<{ x: Float32Array; source: string }> {
  const example = shape.slice(1);
  const size = example.reduce((a, b) => a * b, 1);
  const path = join(dataDir, FASHION_IMAGES);
  if (dataDir !== 'none' && existsSync(path) && example.join() === '28,28,1') {
    const images = parseIdx((await readSourceFile(path, 'Fashion-MNIST test images')).data, path, 3);
    const raw = Float32Array.from(images.data.subarray(0, count * size));
    return { x: applyPreprocessing(raw, example, preprocessing), source: `${path}, the first ${count} test image(s)` };
  }
  const rng = createRng(1, 'serve-bench');
  return { x: Float32Array.from({ length: count * size }, () => rng()), source: 'seeded uniform [0, 1) values' };
}

function nest(values: Float32Array, shape: number[]): unknown {
  if (shape.length === 0) return values[0];
  const stride = shape.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: shape[0] }, (_, i) => nest(values.subarray(i * stride, (i + 1) * stride), shape.slice(1)));
}

async function startServe(args: string[]): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr!.on('data', (d) => (out += d));
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start in 60 s:\n${out}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = / on (http:\/\/[^:]+:\d+):/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`pipeline serve exited with ${code}:\n${out}`)));
  });
  return { url, child };
}

async function stopServe(child: ChildProcess): Promise<void> {
  await new Promise<void>((done) => {
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });
}

async function batchStats(url: string, model: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (name: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`${name}{model="${model}"`))
      .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
  return { sum: read('pipeline_serve_batch_size_sum'), count: read('pipeline_serve_batch_size_count') };
}

/**
 * One autocannon run of warm-up + measured seconds on the same connections; only requests sent
 * after the warm-up count. A saturated Node server accepts about one new connection per
 * event-loop turn (plain http.createServer does the same), so a fresh set of connections takes
 * seconds to be served at all; measuring after the warm-up gives the steady state that clients
 * holding their connections (or a proxy) see.
 */
async function load(
  url: string,
  body: string,
  connections: number,
  warmup: number,
  seconds: number,
): Promise<{ latencies: number[]; seconds: number; non2xx: number; errors: number; servedBeforeMeasuring: number }> {
  const latencies: number[] = [];
  const answered = new Set<unknown>();
  let non2xx = 0;
  const t0 = performance.now();
  const instance = autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections,
    duration: warmup + seconds,
  });
  instance.on('response', (client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    const now = performance.now() - t0;
    if (now - responseTime < warmup * 1000) {
      answered.add(client);
      return;
    }
    if (statusCode === 200) latencies.push(responseTime);
    else non2xx++;
  });
  const result = await instance;
  return { latencies, seconds: result.duration - warmup, non2xx, errors: result.errors, servedBeforeMeasuring: answered.size };
}

async function inProcess(versionDir: string, x: Float32Array, shape: number[], seconds: number, warmup: number): Promise<Row> {
  const model = await tf.loadGraphModel(tf.io.fromMemory(await readGraphModelArtifacts(join(versionDir, 'tfjs-graph', 'model.json'))));
  const call = async () => {
    const input = tf.tensor(x, [1, ...shape.slice(1)]);
    const y = model.predict(input) as tf.Tensor;
    await y.data();
    tf.dispose([input, y]);
  };
  for (const end = performance.now() + warmup * 1000; performance.now() < end; ) await call();
  const times: number[] = [];
  const started = performance.now();
  for (const end = started + seconds * 1000; performance.now() < end; ) {
    const t0 = performance.now();
    await call();
    times.push(performance.now() - t0);
  }
  const elapsed = (performance.now() - started) / 1000;
  model.dispose();
  times.sort((a, b) => a - b);
  return {
    mode: 'in-process predict + data, batch 1',
    concurrency: 1,
    requestsPerSec: times.length / elapsed,
    p50Ms: percentile(times, 0.5),
    p99Ms: percentile(times, 0.99),
    requests: times.length,
    non2xx: 0,
    errors: 0,
  };
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined || Number.isNaN(v) ? '-' : v < 100 ? v.toFixed(digits) : Math.round(v).toLocaleString('en-US'));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'model-base': { type: 'string' },
      model: { type: 'string' },
      concurrency: { type: 'string', default: '1,16,64' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '5' },
      backend: { type: 'string', default: 'auto' },
      'max-batch-size': { type: 'string', default: '32' },
      'batch-timeout-micros': { type: 'string', default: '0' },
      instances: { type: 'string', default: '1' },
      data: { type: 'string', default: '/usr/share/datasets/fashion-mnist' },
      out: { type: 'string' },
    },
  });
  if (!values['model-base'] || !values.model) throw new Error('--model-base DIR and --model NAME are required (e.g. --model-base artifacts/serving --model fashion)');
  if (!(BACKEND_CHOICES as readonly string[]).includes(values.backend)) throw new Error(`--backend ${values.backend}: one of ${BACKEND_CHOICES.join(', ')}`);
  const base = resolve(values['model-base']);
  const name = values.model;
  const concurrencies = values.concurrency.split(',').map(Number);
  const duration = Number(values.duration);
  const warmup = Number(values.warmup);
  const instances = Number(values.instances);
  const serveArgs = [base, '--model-name', name, '--port', '0', '--poll-seconds', '0', '--backend', values.backend, '--quiet'];
  const modes: [string, string[]][] = [
    ['server, no batching', ['--no-batching']],
    [
      `server, batching (max ${values['max-batch-size']} rows, timeout ${values['batch-timeout-micros']} us)`,
      ['--max-batch-size', values['max-batch-size'], '--batch-timeout-micros', values['batch-timeout-micros']],
    ],
  ];

  const rows: Row[] = [];
  let versionDir = '';
  let x: Float32Array = new Float32Array(0);
  let shape: number[] = [];
  let note = '';
  // Both servers run from the start and take turns per concurrency (the idle one costs nothing):
  // on a shared machine a slow minute then hits both modes alike instead of one.
  const servers: { mode: string; url: string; child: ChildProcess }[] = [];
  try {
    for (const [mode, flags] of modes) servers.push({ mode, ...(await startServe([...serveArgs, ...flags])) });
    const status = await (await fetch(`${servers[0].url}/v1/models/${name}`)).json();
    const version = status.model_version_status.find((v: { state: string }) => v.state === 'AVAILABLE').version;
    versionDir = join(base, name, version);
    const card = await modelCard(versionDir);
    shape = card.shape;
    const input = await examples(instances, shape, card.preprocessing, values.data);
    x = input.x;
    note = `${name} version ${version} (${card.parameters?.toLocaleString('en-US') ?? '?'} parameters), input ${input.source}`;
    console.log(`model: ${note}`);
    console.log(`machine: ${os.cpus()[0]?.model ?? '?'}, ${os.cpus().length} cores, node ${process.version}\n`);
    const body = JSON.stringify({ instances: nest(x, [instances, ...shape.slice(1)]) });
    for (const { mode, url } of servers) {
      const check = await fetch(`${url}/v1/models/${name}:predict`, { method: 'POST', body });
      if (check.status !== 200) throw new Error(`${mode}: a request failed with ${check.status}: ${await check.text()}`);
    }
    for (const c of concurrencies) {
      for (const { mode, url } of servers) {
        const before = await batchStats(url, name);
        const run = await load(`${url}/v1/models/${name}:predict`, body, c, warmup, duration);
        const after = await batchStats(url, name);
        const latencies = run.latencies.sort((a, b) => a - b);
        const row: Row = {
          mode,
          concurrency: c,
          requestsPerSec: latencies.length / run.seconds,
          p50Ms: percentile(latencies, 0.5),
          p99Ms: percentile(latencies, 0.99),
          requests: latencies.length,
          non2xx: run.non2xx,
          errors: run.errors,
          // Warm-up included: the batch sizes of the whole run.
          rowsPerRun: after.count > before.count ? (after.sum - before.sum) / (after.count - before.count) : undefined,
          connectionsServedBeforeMeasuring: run.servedBeforeMeasuring,
        };
        rows.push(row);
        console.error(`${mode}, concurrency ${c}: ${fmt(row.requestsPerSec)} req/s, p50 ${fmt(row.p50Ms)} ms, p99 ${fmt(row.p99Ms)} ms`);
      }
    }
  } finally {
    for (const s of servers) await stopServe(s.child);
  }
  rows.sort((a, b) => modes.findIndex(([m]) => m === a.mode) - modes.findIndex(([m]) => m === b.mode));
  const backend = await selectBackend(values.backend as BackendChoice);
  rows.push(await inProcess(versionDir, x, [instances, ...shape.slice(1)], duration, warmup));

  const header = ['mode', 'conc', 'req/s', 'p50 ms', 'p99 ms', 'rows/run', 'requests', 'non-2xx'];
  const table = rows.map((r) => [
    r.mode,
    String(r.concurrency),
    fmt(r.requestsPerSec, 1),
    fmt(r.p50Ms),
    fmt(r.p99Ms),
    fmt(r.rowsPerRun, 1),
    String(r.requests),
    String(r.non2xx + r.errors),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(`\nbackend ${backend.name}; ${duration} s measured per cell after ${warmup} s of warm-up on the same connections; ${instances} example(s) per request`);
  const starved = rows.filter((r) => r.connectionsServedBeforeMeasuring !== undefined && r.connectionsServedBeforeMeasuring < r.concurrency);
  for (const r of starved) console.log(`note: ${r.mode}, concurrency ${r.concurrency}: only ${r.connectionsServedBeforeMeasuring} connections had an answer before measuring (raise --warmup)`);
  console.log(line(header));
  for (const t of table) console.log(line(t));

  if (values.out) {
    await writeFile(
      values.out,
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          model: note,
          machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version, loadavg: os.loadavg() },
          settings: { backend: backend.name, duration, warmup, instances, concurrencies, maxBatchSize: Number(values['max-batch-size']), batchTimeoutMicros: Number(values['batch-timeout-micros']) },
          rows,
        },
        null,
        2,
      )}\n`,
    );
    console.log(`\nwrote ${values.out}`);
  }
  if (rows.some((r) => r.non2xx + r.errors > 0)) process.exitCode = 1;
}

await main();
process.exit(process.exitCode ?? 0);
