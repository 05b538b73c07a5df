import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type * as tfTypes from '@tensorflow/tfjs';
import { createRng } from '../../src/random.js';
import { parseIdx } from '../../src/data/idx.js';
import { applyPreprocessing } from '../../src/data/normalize.js';
import { readSourceFile } from '../../src/data/source.js';
import type { Preprocessing } from '../../src/data/types.js';
import { readGraphModelArtifacts, readModelArtifacts } from '../../src/models/io.js';
import { runInChild } from '../child.js';

// Inference latency and throughput of an exported model (a TensorFlow Serving version folder
// written by the export stage), per runtime and batch size, side by side:
//   tfjs-layers/model.json and tfjs-graph/model.json with the stock tfjs loaders on the cpu and
//   wasm backends, and onnx/model.onnx in onnxruntime-node on the CPU.
// One timed call is what a server does per request: input tensor from a Float32Array, predict,
// download the output (`await y.data()`), dispose. Each runtime runs in its own process (the wasm
// thread count is fixed once its module starts; no runtime's threads or heap disturb another's),
// and every runtime's predictions are compared with onnxruntime's on the same batch, so a broken
// export cannot pass for a fast one.
//
//   node dist/bench/export/inference-bench.js --model DIR [--batches 1,256] [--seconds 2] [--out FILE.json]
//     [--runtimes tfjs-layers:cpu,tfjs-layers:wasm,tfjs-graph:cpu,tfjs-graph:wasm,onnxruntime]
//     [--data /usr/share/datasets/fashion-mnist | none] [--warmup 1] [--min-calls 30] [--seed 1]
//
// Runtimes: tfjs-layers:B and tfjs-graph:B with B = cpu, wasm (1 thread, as `--backend wasm`
// trains) or wasm-Nt (N XNNPACK threads); onnxruntime (default session options) or
// onnxruntime:Nt (intraOpNumThreads = N). See bench/export/README.md.

const FASHION_DIR = '/usr/share/datasets/fashion-mnist';
const FASHION_TEST = { images: 't10k-images-idx3-ubyte.gz', labels: 't10k-labels-idx1-ubyte.gz' };
const DEFAULT_RUNTIMES = ['tfjs-layers:cpu', 'tfjs-layers:wasm', 'tfjs-graph:cpu', 'tfjs-graph:wasm', 'onnxruntime'];
/** Warm-up calls wanted (and at least --warmup seconds), unless the time box ends it first. */
const WARMUP_CALLS = 20;
/** The timed phase stops at 3 x --seconds whatever the number of calls (at least one call). */
const TIME_BOX_FACTOR = 3;
/** Largest |difference| in any output probability from the reference runtime still called agreement. */
const AGREEMENT_TOLERANCE = 1e-3;
/** An argmax that differs where the reference's top two are closer than this is a tie, not a bug. */
const TIE_GAP = 1e-4;

type Format = 'tfjs-layers' | 'tfjs-graph' | 'onnx';

interface Runtime {
  /** As given on the command line, e.g. "tfjs-graph:wasm-2t". */
  name: string;
  format: Format;
  engine: 'tfjs' | 'onnxruntime';
  /** tfjs backend (cpu or wasm); "cpu" for onnxruntime (its CPU execution provider). */
  backend: 'cpu' | 'wasm';
  /** wasm: XNNPACK threads; onnxruntime: intraOpNumThreads, or undefined for its default. */
  threads?: number;
}

const FORMAT_FILES: Record<Format, string> = {
  'tfjs-layers': 'tfjs-layers/model.json',
  'tfjs-graph': 'tfjs-graph/model.json',
  onnx: 'onnx/model.onnx',
};

function parseRuntime(name: string): Runtime {
  const tfjs = /^(tfjs-layers|tfjs-graph):(cpu|wasm)(?:-(\d+)t)?$/.exec(name);
  if (tfjs && !(tfjs[2] === 'cpu' && tfjs[3] !== undefined)) {
    const format = tfjs[1] as Format;
    const backend = tfjs[2] as 'cpu' | 'wasm';
    return { name, format, engine: 'tfjs', backend, threads: backend === 'wasm' ? Number(tfjs[3] ?? 1) : 1 };
  }
  const ort = /^onnxruntime(?::(?:cpu-)?(\d+)t|:cpu)?$/.exec(name);
  if (ort) return { name, format: 'onnx', engine: 'onnxruntime', backend: 'cpu', threads: ort[1] === undefined ? undefined : Number(ort[1]) };
  throw new Error(
    `--runtimes: unknown runtime "${name}"; expected tfjs-layers:B or tfjs-graph:B (B: cpu, wasm, wasm-2t...), ` +
      'onnxruntime (default session options) or onnxruntime:Nt (intraOpNumThreads N)',
  );
}

// ---------------------------------------------------------------------------------------------
// The model card and the input batches (built the same way in every process)

interface ModelCard {
  modelName?: string;
  parameters?: number;
  labels?: string[];
  signature: {
    inputs: Record<string, { shape: number[]; dtype: string }>;
    outputs: Record<string, { shape: number[]; dtype: string }>;
  };
  preprocessing: Preprocessing & { note?: string };
}

async function readCard(modelDir: string): Promise<ModelCard> {
  const path = join(modelDir, 'model-card.json');
  if (!existsSync(path)) throw new Error(`--model ${modelDir}: no model-card.json (expected an export stage's serving version folder)`);
  return JSON.parse(await readFile(path, 'utf8')) as ModelCard;
}

function signatureOf(card: ModelCard): { inputName: string; outputName: string; featureShape: number[] } {
  const [inputName, input] = Object.entries(card.signature.inputs)[0];
  const [outputName] = Object.entries(card.signature.outputs)[0];
  const featureShape = input.shape.slice(1);
  if (featureShape.some((d) => !(d > 0))) throw new Error(`model-card.json: input shape [${input.shape}] has an unknown feature dimension`);
  return { inputName, outputName, featureShape };
}

interface BenchInput {
  source: 'fashion-mnist test' | 'random';
  /** Why random data was used, or where the images came from. */
  note: string;
  featureShape: number[];
  /** maxBatch samples, preprocessed as the model card says; a batch of b is the first b. */
  x: Float32Array;
  labels?: Uint8Array;
}

/**
 * The first maxBatch Fashion-MNIST test images (repeated if maxBatch > 10,000), preprocessed with
 * the card's preprocessing; seeded uniform [0, 1) values where the data set is absent or the
 * model does not take 28 x 28 x 1 images.
 */
async function loadInput(card: ModelCard, dataDir: string, maxBatch: number, seed: number): Promise<BenchInput> {
  const { featureShape } = signatureOf(card);
  const features = featureShape.reduce((a, b) => a * b, 1);
  const random = (note: string): BenchInput => {
    const rng = createRng(seed, 'inference-bench:input');
    return { source: 'random', note, featureShape, x: Float32Array.from({ length: maxBatch * features }, () => rng()) };
  };
  if (dataDir === 'none') return random('--data none');
  const imagesPath = join(dataDir, FASHION_TEST.images);
  if (!existsSync(imagesPath)) return random(`${imagesPath} not found`);
  const images = parseIdx((await readSourceFile(imagesPath, 'Fashion-MNIST test images')).data, imagesPath, 3);
  const [count, rows, cols] = images.dims;
  if (featureShape.join() !== [rows, cols, 1].join()) {
    return random(`the model takes [${featureShape}], the Fashion-MNIST images are [${rows},${cols},1]`);
  }
  const labelsPath = join(dataDir, FASHION_TEST.labels);
  const labels = existsSync(labelsPath)
    ? parseIdx((await readSourceFile(labelsPath, 'Fashion-MNIST test labels')).data, labelsPath, 1).data
    : undefined;
  const raw = new Float32Array(maxBatch * features);
  const batchLabels = new Uint8Array(maxBatch);
  for (let i = 0; i < maxBatch; i++) {
    const k = i % count;
    raw.set(images.data.subarray(k * features, (k + 1) * features), i * features);
    if (labels) batchLabels[i] = labels[k];
  }
  const { note: _note, ...preprocessing } = card.preprocessing;
  return {
    source: 'fashion-mnist test',
    note: `${imagesPath}: the first ${Math.min(maxBatch, count)} test images, preprocessing ${JSON.stringify(preprocessing)}`,
    featureShape,
    x: applyPreprocessing(raw, featureShape, preprocessing as Preprocessing),
    labels: labels ? batchLabels : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Timing

interface TimingOptions {
  warmupSeconds: number;
  seconds: number;
  minCalls: number;
}

interface Cell {
  batch: number;
  warmupCalls: number;
  /** The very first call of this batch size (in the process: after loading and any smaller batch). */
  firstCallMs: number;
  calls: number;
  p50Ms: number;
  p90Ms: number;
  minMs: number;
  meanMs: number;
  /** batch / p50. */
  samplesPerSec: number;
  /** True when the time box, not the wanted calls, ended the timed phase. */
  timeBoxed: boolean;
  /** tfjs: tensors alive after the cell minus before (0: nothing leaked). */
  leakedTensors?: number;
  /** Output of the last call, row-major [batch, classes]. */
  output: number[];
}

/** Linear interpolation between closest ranks (numpy's default). */
function percentile(sorted: number[], p: number): number {
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

async function timeCell(batch: number, call: () => Promise<Float32Array>, o: TimingOptions): Promise<Omit<Cell, 'leakedTensors'>> {
  const warmupBox = Math.max(o.warmupSeconds, o.seconds) * 1000;
  let warmupCalls = 0;
  let firstCallMs = 0;
  const warmupStart = performance.now();
  for (;;) {
    const start = performance.now();
    await call();
    if (warmupCalls++ === 0) firstCallMs = performance.now() - start;
    const elapsed = performance.now() - warmupStart;
    if ((warmupCalls >= WARMUP_CALLS && elapsed >= o.warmupSeconds * 1000) || elapsed >= warmupBox) break;
  }
  const box = TIME_BOX_FACTOR * o.seconds * 1000;
  const ms: number[] = [];
  let output: Float32Array = new Float32Array(0);
  let timeBoxed = false;
  const timedStart = performance.now();
  for (;;) {
    const start = performance.now();
    output = await call();
    ms.push(performance.now() - start);
    const elapsed = performance.now() - timedStart;
    if (ms.length >= o.minCalls && elapsed >= o.seconds * 1000) break;
    if (elapsed >= box) {
      timeBoxed = true;
      break;
    }
  }
  const sorted = [...ms].sort((a, b) => a - b);
  const p50Ms = percentile(sorted, 0.5);
  return {
    batch,
    warmupCalls,
    firstCallMs,
    calls: ms.length,
    p50Ms,
    p90Ms: percentile(sorted, 0.9),
    minMs: sorted[0],
    meanMs: ms.reduce((a, b) => a + b, 0) / ms.length,
    samplesPerSec: (batch * 1000) / p50Ms,
    timeBoxed,
    output: Array.from(output),
  };
}

// ---------------------------------------------------------------------------------------------
// One runtime, in a child process

interface ChildRequest {
  runtime: string;
  model: string;
  data: string;
  seed: number;
  batches: number[];
  timing: TimingOptions;
}

interface ChildResult {
  runtime: string;
  status: 'ok' | 'failed';
  error?: string;
  /** Reading the files and building the model or session. */
  loadMs?: number;
  /** Threads doing the math: cpu backend 1 (the JS thread); wasm: XNNPACK's; onnxruntime: its intra-op pool. */
  threads?: number;
  details?: Record<string, string | number | boolean>;
  cells?: Cell[];
}

type Predict = (x: tfTypes.Tensor) => tfTypes.Tensor;

function processThreads(): number | undefined {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

async function runChild(request: ChildRequest): Promise<ChildResult> {
  const runtime = parseRuntime(request.runtime);
  const card = await readCard(request.model);
  const { inputName, outputName } = signatureOf(card);
  const input = await loadInput(card, request.data, Math.max(...request.batches), request.seed);
  const file = join(request.model, FORMAT_FILES[runtime.format]);
  const features = input.featureShape.reduce((a, b) => a * b, 1);
  const batchOf = (b: number) => ({ x: input.x.slice(0, b * features), shape: [b, ...input.featureShape] });
  const cells: Cell[] = [];

  if (runtime.engine === 'onnxruntime') {
    const ort = await import('onnxruntime-node');
    const readStart = performance.now();
    const bytes = await readFile(file);
    const readMs = performance.now() - readStart;
    // The first session of a process also starts onnxruntime's global threads: a one-thread
    // session (whose pool has no threads of its own) is made first, so that the thread count
    // gained by the measured session is its intra-op pool's (minus the caller, which takes part).
    const probe = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
    await probe.release();
    const options = runtime.threads === undefined ? {} : { intraOpNumThreads: runtime.threads };
    const before = processThreads();
    const loadStart = performance.now();
    const session = await ort.InferenceSession.create(bytes, options);
    const loadMs = readMs + performance.now() - loadStart;
    const after = processThreads();
    const poolThreads = before !== undefined && after !== undefined ? after - before + 1 : undefined;
    if (!session.inputNames.includes(inputName) || !session.outputNames.includes(outputName)) {
      throw new Error(`${file}: inputs [${session.inputNames}], outputs [${session.outputNames}]; the card names "${inputName}" -> "${outputName}"`);
    }
    try {
      for (const b of request.batches) {
        const { x, shape } = batchOf(b);
        const call = async () => {
          const result = await session.run({ [inputName]: new ort.Tensor('float32', x, shape) });
          return result[outputName].data as Float32Array;
        };
        cells.push(await timeCell(b, call, request.timing));
      }
    } finally {
      await session.release();
    }
    return {
      runtime: runtime.name,
      status: 'ok',
      loadMs,
      threads: poolThreads,
      details: {
        intraOpNumThreads: runtime.threads ?? 'default (0: onnxruntime picks, one per physical core)',
        ...(poolThreads === undefined ? {} : { intraOpPoolThreadsMeasured: poolThreads }),
        sessionOptions: JSON.stringify(options),
        version: ort.env.versions.node ?? ort.env.versions.common,
      },
      cells,
    };
  }

  // tfjs. The wasm backend must start before anything else touches the tfjs engine.
  const tf = await import('@tensorflow/tfjs');
  const { selectBackend } = await import('../../src/backend/select.js');
  const details: Record<string, string | number | boolean> = {};
  let threads = 1;
  if (runtime.backend === 'wasm') {
    const { initWasmBackend } = await import('../../src/backend/wasm/init.js');
    const init = await initWasmBackend({ threads: runtime.threads });
    threads = init.threads;
    details.simd = init.simd;
  }
  const selection = await selectBackend(runtime.backend);
  if (tf.getBackend() !== runtime.backend) throw new Error(`active tfjs backend is ${tf.getBackend()}, not ${runtime.backend}`);
  if (runtime.backend === 'wasm') threads = Number(selection.details.threads ?? threads);
  details.backend = selection.tfBackend;

  const loadStart = performance.now();
  let predict: Predict;
  let dispose: () => void;
  if (runtime.format === 'tfjs-layers') {
    const model = await tf.loadLayersModel(tf.io.fromMemory(await readModelArtifacts(file)));
    // predict() would split the batch into batches of 32 (its default batchSize); a server
    // answering one request of b samples runs them as one batch.
    predict = (x) => model.predictOnBatch(x) as tfTypes.Tensor;
    dispose = () => model.dispose();
  } else {
    const model = await tf.loadGraphModel(tf.io.fromMemory(await readGraphModelArtifacts(file)));
    predict = (x) => {
      const y = model.predict(x);
      if (!(y instanceof tf.Tensor)) throw new Error(`${file}: predict returned several outputs; expected "${outputName}" alone`);
      return y;
    };
    dispose = () => model.dispose();
  }
  const loadMs = performance.now() - loadStart;
  try {
    for (const b of request.batches) {
      const { x, shape } = batchOf(b);
      const call = async () => {
        const t = tf.tensor(x, shape, 'float32');
        const y = predict(t);
        const out = (await y.data()) as Float32Array;
        tf.dispose([t, y]);
        return out;
      };
      const tensorsBefore = tf.memory().numTensors;
      const cell = await timeCell(b, call, request.timing);
      cells.push({ ...cell, leakedTensors: tf.memory().numTensors - tensorsBefore });
    }
  } finally {
    dispose();
  }
  return { runtime: runtime.name, status: 'ok', loadMs, threads, details, cells };
}

async function spawnChild(request: ChildRequest, deadlineMs: number): Promise<ChildResult> {
  const outcome = await runInChild<ChildResult>(fileURLToPath(import.meta.url), request, '{"runtime"', deadlineMs);
  return outcome.ok ? outcome.result : { runtime: request.runtime, status: 'failed', error: outcome.why };
}

// ---------------------------------------------------------------------------------------------
// Agreement between runtimes

interface Agreement {
  runtime: string;
  batch: number;
  reference: string;
  /** Samples whose argmax equals the reference's. */
  argmaxEqual: number;
  /** Of those that differ, how many are near-ties in the reference (top two within TIE_GAP). */
  ties: number;
  maxAbsDiff: number;
  /** Top-1 accuracy against the Fashion-MNIST labels, when the input is that data set. */
  accuracy?: number;
  ok: boolean;
}

function argmaxRows(values: number[], rows: number): { index: number[]; gap: number[] } {
  const classes = values.length / rows;
  const index: number[] = [];
  const gap: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    let second = -Infinity;
    for (let c = 1; c < classes; c++) {
      const v = values[r * classes + c];
      if (v > values[r * classes + best]) {
        second = values[r * classes + best];
        best = c;
      } else if (v > second) second = v;
    }
    index.push(best);
    gap.push(values[r * classes + best] - second);
  }
  return { index, gap };
}

function agreement(results: ChildResult[], referenceName: string, batch: number, labels?: Uint8Array): Agreement[] {
  const cellOf = (r: ChildResult) => r.cells?.find((c) => c.batch === batch);
  const ref = results.find((r) => r.runtime === referenceName);
  const refCell = ref && cellOf(ref);
  if (!refCell) return [];
  const want = argmaxRows(refCell.output, batch);
  const out: Agreement[] = [];
  for (const r of results) {
    const cell = cellOf(r);
    if (!cell) continue;
    const got = argmaxRows(cell.output, batch);
    let argmaxEqual = 0;
    let ties = 0;
    let correct = 0;
    for (let i = 0; i < batch; i++) {
      if (got.index[i] === want.index[i]) argmaxEqual++;
      else if (want.gap[i] < TIE_GAP) ties++;
      if (labels && got.index[i] === labels[i]) correct++;
    }
    let maxAbsDiff = cell.output.length === refCell.output.length ? 0 : Infinity;
    for (let i = 0; i < cell.output.length && maxAbsDiff !== Infinity; i++) {
      const d = Math.abs(cell.output[i] - refCell.output[i]);
      if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? Infinity : d;
    }
    out.push({
      runtime: r.runtime,
      batch,
      reference: referenceName,
      argmaxEqual,
      ties,
      maxAbsDiff,
      ...(labels ? { accuracy: correct / batch } : {}),
      ok: argmaxEqual + ties === batch && maxAbsDiff <= AGREEMENT_TOLERANCE,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main

function packageVersion(name: string): string | null {
  try {
    const require = createRequire(import.meta.url);
    return (JSON.parse(readFileSync(require.resolve(`${name}/package.json`), 'utf8')) as { version: string }).version;
  } catch {
    return null;
  }
}

function fmtMs(ms: number): string {
  return ms < 1 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(0);
}

function fmtRate(v: number): string {
  return v < 10 ? v.toFixed(2) : Math.round(v).toLocaleString('en-US');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      batches: { type: 'string', default: '1,256' },
      runtimes: { type: 'string', default: DEFAULT_RUNTIMES.join(',') },
      seconds: { type: 'string', default: '2' },
      warmup: { type: 'string', default: '1' },
      'min-calls': { type: 'string', default: '30' },
      data: { type: 'string', default: FASHION_DIR },
      seed: { type: 'string', default: '1' },
      out: { type: 'string' },
      child: { type: 'string' },
    },
  });
  if (values.child !== undefined) {
    const result = await runChild(JSON.parse(values.child) as ChildRequest);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }

  if (values.model === undefined) throw new Error('--model DIR is required (a serving version folder, e.g. artifacts/serving/<name>/1)');
  const model = resolve(values.model);
  const number = (flag: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${flag} ${v}: expected a number >= ${min}`);
    return n;
  };
  const batches = values.batches.split(',').filter(Boolean).map((b) => number('batches', b, 1));
  if (batches.some((b) => !Number.isInteger(b))) throw new Error(`--batches ${values.batches}: expected whole numbers`);
  const timing: TimingOptions = {
    warmupSeconds: number('warmup', values.warmup, 0),
    seconds: number('seconds', values.seconds, 0.01),
    minCalls: number('min-calls', values['min-calls'], 1),
  };
  const seed = number('seed', values.seed, 0);
  const runtimes = values.runtimes.split(',').filter(Boolean).map(parseRuntime);
  const card = await readCard(model);
  const input = await loadInput(card, values.data, Math.max(...batches), seed);

  const cpus = os.cpus();
  const machine = {
    host: os.hostname(),
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    loadavg: os.loadavg(),
  };
  const packages = Object.fromEntries(
    ['@tensorflow/tfjs-core', '@tensorflow/tfjs-layers', '@tensorflow/tfjs-converter', '@tensorflow/tfjs-backend-wasm', 'onnxruntime-node'].map(
      (p) => [p, packageVersion(p)],
    ),
  );
  console.log(`model: ${model} (${card.modelName ?? '?'}, ${card.parameters?.toLocaleString('en-US') ?? '?'} parameters)`);
  console.log(`input: ${input.source}: ${input.note}`);
  console.log(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}; tfjs-core ${packages['@tensorflow/tfjs-core']}, ` +
      `onnxruntime-node ${packages['onnxruntime-node']}`,
  );
  console.log(
    `method: per batch, warm-up >= ${WARMUP_CALLS} calls and >= ${timing.warmupSeconds} s (box ${+Math.max(timing.warmupSeconds, timing.seconds).toPrecision(6)} s), ` +
      `then timed calls until >= ${timing.minCalls} calls and >= ${timing.seconds} s (box ${+(TIME_BOX_FACTOR * timing.seconds).toPrecision(6)} s)\n`,
  );

  // Each runtime's process: loading, then per batch at most the two boxes plus one call past each
  // (a slow cell's calls can be much longer than the boxes: generous).
  const deadlineMs = 300_000 + batches.length * (Math.max(timing.warmupSeconds, timing.seconds) + TIME_BOX_FACTOR * timing.seconds) * 2000;
  const results: ChildResult[] = [];
  for (const runtime of runtimes) {
    const file = join(model, FORMAT_FILES[runtime.format]);
    if (!existsSync(file)) {
      results.push({ runtime: runtime.name, status: 'failed', error: `${file} not found (format not exported?)` });
      console.error(`${runtime.name}: skipped, ${file} not found`);
      continue;
    }
    const request: ChildRequest = { runtime: runtime.name, model, data: values.data, seed, batches, timing };
    const r = await spawnChild(request, deadlineMs);
    results.push(r);
    console.error(
      r.status === 'ok'
        ? `${r.runtime}: ${r.cells!.map((c) => `b${c.batch} p50 ${fmtMs(c.p50Ms)} ms (${c.calls} calls)`).join(', ')}`
        : `${r.runtime}: FAILED: ${r.error}`,
    );
  }

  // The reference for agreement and the ratio column: onnxruntime with default options, else the first onnxruntime, else the first that ran.
  const ok = results.filter((r) => r.status === 'ok');
  const reference =
    ok.find((r) => r.runtime === 'onnxruntime' || r.runtime === 'onnxruntime:cpu') ??
    ok.find((r) => r.runtime.startsWith('onnxruntime')) ??
    ok[0];
  const agreements = reference ? batches.flatMap((b) => agreement(ok, reference.runtime, b, input.labels)) : [];

  const rows = ok.flatMap((r) =>
    r.cells!.map((c) => {
      const refCell = reference?.cells?.find((rc) => rc.batch === c.batch);
      const agree = agreements.find((a) => a.runtime === r.runtime && a.batch === c.batch);
      const { output: _output, ...cell } = c;
      return {
        runtime: r.runtime,
        threads: r.threads ?? null,
        ...cell,
        vsReference: refCell ? c.p50Ms / refCell.p50Ms : null,
        agreement: agree ?? null,
      };
    }),
  );
  rows.sort((a, b) => a.batch - b.batch);

  const refShort = reference?.runtime.startsWith('onnxruntime') ? 'ort' : (reference?.runtime ?? '-');
  const table = [
    ['runtime', 'threads', 'batch', 'calls', 'p50 ms', 'p90 ms', 'samples/s', `p50 vs ${refShort}`, `argmax = ${refShort}`, 'max |dp|'],
    ...rows.map((r) => [
      r.runtime,
      r.threads === null ? '?' : String(r.threads),
      String(r.batch),
      `${r.calls}${r.timeBoxed ? '*' : ''}`,
      fmtMs(r.p50Ms),
      fmtMs(r.p90Ms),
      fmtRate(r.samplesPerSec),
      r.vsReference === null ? '-' : `${r.vsReference.toFixed(r.vsReference < 10 ? 2 : 1)}x`,
      r.agreement ? `${r.agreement.argmaxEqual}/${r.batch}${r.agreement.ok ? '' : ' NO'}` : '-',
      r.agreement ? r.agreement.maxAbsDiff.toExponential(1) : '-',
    ]),
  ];
  const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
  for (const [i, row] of table.entries()) {
    if (i > 1 && rows[i - 1].batch !== rows[i - 2].batch) console.log('');
    console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
  }
  console.log(
    `\np50/p90: latency of one call (input tensor, predict, output download); samples/s = batch / p50; ` +
      `p50 vs ${refShort}: this p50 / ${reference?.runtime ?? '-'}'s at the same batch (2.00x = twice as long); ` +
      `* = ended by the time box.`,
  );
  for (const r of ok) {
    const extra = Object.entries(r.details ?? {}).map(([k, v]) => `${k} ${v}`).join(', ');
    const first = r.cells!.map((c) => `first call b${c.batch} ${fmtMs(c.firstCallMs)} ms`).join(', ');
    console.log(`  ${r.runtime}: ${r.threads ?? '?'} thread(s); load ${fmtMs(r.loadMs ?? 0)} ms, ${first}${extra ? `; ${extra}` : ''}`);
    const leaks = r.cells!.filter((c) => (c.leakedTensors ?? 0) !== 0);
    if (leaks.length) console.log(`    leaked tensors: ${leaks.map((c) => `b${c.batch} ${c.leakedTensors}`).join(', ')}`);
  }
  if (input.labels) {
    const maxBatch = Math.max(...batches);
    const acc = agreements.filter((a) => a.batch === maxBatch && a.accuracy !== undefined);
    if (acc.length) console.log(`accuracy on the batch of ${maxBatch} (Fashion-MNIST labels): ${acc.map((a) => `${a.runtime} ${a.accuracy!.toFixed(4)}`).join(', ')}`);
  }
  const disagree = agreements.filter((a) => !a.ok);
  const failed = results.filter((r) => r.status !== 'ok');
  for (const r of failed) console.log(`FAILED ${r.runtime}: ${r.error}`);
  if (reference && ok.length < 2) {
    console.log(`predictions NOT CHECKED: only ${reference.runtime} ran, there is nothing to compare it with`);
  } else if (reference) {
    console.log(
      disagree.length
        ? `PREDICTIONS DISAGREE with ${reference.runtime}: ${disagree
            .map((a) => `${a.runtime} b${a.batch} (argmax ${a.argmaxEqual}/${a.batch}, max |dp| ${a.maxAbsDiff.toExponential(1)})`)
            .join('; ')}`
        : `predictions agree: every runtime's argmax equals ${reference.runtime}'s on every batch` +
            `${agreements.some((a) => a.ties) ? ' (but near-ties)' : ''}, max |dp| <= ${Math.max(0, ...agreements.map((a) => a.maxAbsDiff)).toExponential(1)}`,
    );
  }

  const report = {
    bench: 'export-inference',
    date: new Date().toISOString(),
    model,
    modelName: card.modelName ?? null,
    parameters: card.parameters ?? null,
    machine,
    packages,
    input: { source: input.source, note: input.note, featureShape: input.featureShape, seed: input.source === 'random' ? seed : null },
    method: {
      timedCall: 'tfjs: tf.tensor(x) -> predict (layers: predictOnBatch) -> await y.data() -> dispose; onnxruntime: new Tensor(x) -> session.run -> output data',
      warmupCalls: WARMUP_CALLS,
      warmupSeconds: timing.warmupSeconds,
      warmupBoxSeconds: Math.max(timing.warmupSeconds, timing.seconds),
      seconds: timing.seconds,
      minCalls: timing.minCalls,
      timeBoxSeconds: TIME_BOX_FACTOR * timing.seconds,
      percentiles: 'linear interpolation between closest ranks',
      agreementTolerance: AGREEMENT_TOLERANCE,
    },
    reference: reference?.runtime ?? null,
    runtimes: results.map(({ cells: _cells, ...r }) => r),
    rows,
  };
  if (values.out) {
    await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`figures written to ${values.out}`);
  }
  if (failed.length || disagree.length) process.exitCode = 1;
}

try {
  await main();
} catch (err) {
  // Usage and input errors: one line, exit 2 (a child's line reaches the parent's FAILED row).
  console.error(`inference-bench: ${(err as Error).message}`);
  process.exitCode = 2;
}
