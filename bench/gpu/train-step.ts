// Full training steps on webgpu through our training loop (src/train/loop.ts), with our kernels and
// fused Adam (ours) and with tfjs's own kernels and tf.train.adam (stock), for the Fashion-MNIST
// teacher CNN and the reference 784-1200-1200-10 MLP. Each run is one fit() of two epochs on
// synthetic data: epoch 1 warms up (shader compilation), epoch 2 is timed. Bundled for the GPU
// machine with bench/gpu/bundle.sh.
//   node dist/bench/gpu/train-step.js [steps=20] [batches=128,1024] [models=teacher,mlp] [variants=ours,stock,fit] [out.json]
import { writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../src/backend/select.js';
import { registerWebgpuTrainingKernels, unregisterWebgpuTrainingKernels } from '../../src/backend/webgpu/register-all.js';
import { createOptimizer } from '../../src/models/optimizers.js';
import { fit } from '../../src/train/loop.js';
import { silentObserver, type EpochLogs } from '../../src/train/progress.js';
import { createRng, withSeededMathRandom } from '../../src/random.js';
import { buildModel, FEATURES, type ModelName } from './models.js';

const steps = Number(process.argv[2] ?? 20);
const batches = (process.argv[3] ?? '128,1024').split(',').map(Number);
const models = (process.argv[4] ?? 'teacher,mlp').split(',') as ModelName[];
const variants = (process.argv[5] ?? 'ours,stock').split(',') as Variant[];
const out = process.argv[6];

/** ours: our loop + kernels; stock: our loop on tfjs's kernels and tf.train.adam; fit: stock tfjs model.fit. */
type Variant = 'ours' | 'stock' | 'fit';

interface Row {
  model: ModelName;
  batch: number;
  variant: Variant;
  msPerStep: number;
  samplesPerSecond: number;
  loss: number;
}

async function run(model: ModelName, batch: number, variant: Variant): Promise<Row> {
  if (variant === 'ours') registerWebgpuTrainingKernels();
  else unregisterWebgpuTrainingKernels();
  const featureShape = FEATURES[model];
  const count = steps * batch;
  const rng = createRng(1, `bench:${model}`);
  const x = new Float32Array(count * featureShape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < x.length; i++) x[i] = rng();
  const y = Int32Array.from({ length: count }, () => Math.floor(rng() * 10));
  if (variant === 'fit') return stockFit(model, batch, x, y, featureShape);
  return withSeededMathRandom(1, `bench:${model}`, async () => {
    const net = buildModel(model);
    const optimizer = variant === 'ours' ? createOptimizer({ adam: { learningRate: 0.001 } }) : tf.train.adam(0.001);
    const epochs: EpochLogs[] = [];
    await fit({
      model: net,
      train: { x, y, count },
      validation: { x: new Float32Array(0), y: new Int32Array(0), count: 0 },
      featureShape,
      numClasses: 10,
      epochs: 2,
      batchSize: batch,
      optimizer,
      loss: { name: 'sparseCategoricalCrossentropy', labelSmoothing: 0 },
      outputIsProbabilities: false,
      monitor: 'loss',
      minDelta: 0,
      restoreBestWeights: false,
      shuffle: true,
      seed: 1,
      purpose: 'bench',
      observer: { ...silentObserver, epochEnd: (logs) => epochs.push(logs) },
    });
    net.dispose();
    optimizer.dispose();
    const timed = epochs[1];
    return {
      model,
      batch,
      variant,
      msPerStep: (timed.seconds * 1000) / steps,
      samplesPerSecond: count / timed.seconds,
      loss: timed.loss,
    };
  });
}

/** What a tfjs user gets without us: model.compile + model.fit on the stock webgpu kernels. */
async function stockFit(model: ModelName, batch: number, x: Float32Array, y: Int32Array, featureShape: number[]): Promise<Row> {
  const net = buildModel(model);
  const xs = tf.tensor(x, [y.length, ...featureShape]);
  const ys = tf.tensor1d(Float32Array.from(y));
  const started: number[] = [];
  const ended: { ms: number; loss: number }[] = [];
  // from_logits is not an option of tfjs's string losses: the softmax belongs in the model here.
  const logitsModel = tf.sequential({ layers: [net, tf.layers.activation({ activation: 'softmax' })] });
  logitsModel.compile({ optimizer: tf.train.adam(0.001), loss: 'sparseCategoricalCrossentropy' });
  await logitsModel.fit(xs, ys, {
    batchSize: batch,
    epochs: 2,
    shuffle: true,
    verbose: 0,
    callbacks: {
      onEpochBegin: async () => void started.push(performance.now()),
      onEpochEnd: async (_epoch, logs) => void ended.push({ ms: performance.now() - started[started.length - 1], loss: logs?.loss ?? NaN }),
    },
  });
  tf.dispose([xs, ys]);
  logitsModel.dispose();
  const timed = ended[1];
  return { model, batch, variant: 'fit', msPerStep: timed.ms / steps, samplesPerSecond: y.length / (timed.ms / 1000), loss: timed.loss };
}

const selection = await selectBackend('webgpu');
if (tf.getBackend() !== 'webgpu') throw new Error(`backend is ${tf.getBackend()}, not webgpu`);
console.log(`backend ${selection.reason}: ${selection.details.adapter ?? '?'} (fallback adapter: ${selection.details.fallbackAdapter})`);
console.log(`${steps} timed steps per run, after one warm-up epoch of the same length`);
console.log(`${'model'.padEnd(9)}${'batch'.padStart(6)}  ${'variant'.padEnd(8)}${'ms/step'.padStart(10)}${'samples/s'.padStart(12)}${'loss'.padStart(9)}`);
const rows: Row[] = [];
for (const model of models) {
  for (const batch of batches) {
    for (const variant of variants) {
      const r = await run(model, batch, variant);
      rows.push(r);
      console.log(
        `${model.padEnd(9)}${String(batch).padStart(6)}  ${variant.padEnd(8)}${r.msPerStep.toFixed(1).padStart(10)}` +
          `${Math.round(r.samplesPerSecond).toLocaleString('en-US').padStart(12)}${r.loss.toFixed(4).padStart(9)}`,
      );
    }
    const ours = rows.find((r) => r.model === model && r.batch === batch && r.variant === 'ours');
    for (const other of rows.filter((r) => r.model === model && r.batch === batch && r.variant !== 'ours')) {
      if (ours) console.log(`${''.padEnd(15)}ours ${(other.msPerStep / ours.msPerStep).toFixed(1)}x faster than ${other.variant}`);
    }
  }
}
if (out) await writeFile(out, JSON.stringify({ adapter: selection.details.adapter, steps, rows }, null, 2));
process.exit(0);
