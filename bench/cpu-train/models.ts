import * as tf from '@tensorflow/tfjs';
import { FastBatchNormalization } from '../../src/models/batch-norm.js';

// The benchmark's models in Keras terms (Fashion-MNIST shape, 10 logits). The same
// architectures live in pytorch_cpu.py; keep the two in step. Batch norm is the pipeline's own
// layer (src/models/batch-norm.ts); TFJS_PIPELINE_STOCK_BATCH_NORM=1 measures tfjs's instead.

const batchNormalization = (): tf.layers.Layer =>
  process.env.TFJS_PIPELINE_STOCK_BATCH_NORM === '1' ? tf.layers.batchNormalization() : new FastBatchNormalization();

export const INPUT_SHAPE: [number, number, number] = [28, 28, 1];
export const NUM_CLASSES = 10;

export type ModelName = 'seed003' | 'mid' | 'big' | 'mlp';
export const MODEL_NAMES: readonly ModelName[] = ['seed003', 'mid', 'big', 'mlp'];

/**
 * With a seed, the layers' random parts (kernel initializers, dropout masks) are fixed, so a test's
 * few steps on one batch are the same every time; without, they are tfjs's defaults, as a user gets.
 */
interface Seeded {
  seed?: number;
}

const kernel = ({ seed }: Seeded, salt: number) =>
  seed === undefined ? {} : { kernelInitializer: tf.initializers.glorotUniform({ seed: seed + salt }) };
const dropout = ({ seed }: Seeded, rate: number, salt: number) =>
  tf.layers.dropout({ rate, ...(seed === undefined ? {} : { seed: seed + salt }) });

function convBnRelu(model: tf.Sequential, filters: number, first: boolean, seeded: Seeded = {}): void {
  model.add(
    tf.layers.conv2d({
      ...(first ? { inputShape: INPUT_SHAPE } : {}),
      filters,
      kernelSize: 3,
      padding: 'same',
      ...kernel(seeded, model.layers.length),
    }),
  );
  model.add(batchNormalization());
  model.add(tf.layers.activation({ activation: 'relu' }));
}

/** conv32-pool-conv64-pool-conv64-dense64-dense10, valid padding, relu. */
export function seed003(): tf.Sequential {
  const m = tf.sequential();
  m.add(tf.layers.conv2d({ inputShape: INPUT_SHAPE, filters: 32, kernelSize: 3, activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }));
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 64, activation: 'relu' }));
  m.add(tf.layers.dense({ units: NUM_CLASSES }));
  return m;
}

/** [conv16 bn relu]x2 pool [conv32 bn relu]x2 pool dense32 dense10. */
export function mid(): tf.Sequential {
  const m = tf.sequential();
  convBnRelu(m, 16, true);
  convBnRelu(m, 16, false);
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  convBnRelu(m, 32, false);
  convBnRelu(m, 32, false);
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 32, activation: 'relu' }));
  m.add(tf.layers.dense({ units: NUM_CLASSES }));
  return m;
}

/** [conv32 bn relu]x2 pool drop [conv64 bn relu]x2 pool drop dense256 bn relu drop dense10. */
export function big(seeded: Seeded = {}): tf.Sequential {
  const m = tf.sequential();
  convBnRelu(m, 32, true, seeded);
  convBnRelu(m, 32, false, seeded);
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(dropout(seeded, 0.25, m.layers.length));
  convBnRelu(m, 64, false, seeded);
  convBnRelu(m, 64, false, seeded);
  m.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  m.add(dropout(seeded, 0.25, m.layers.length));
  m.add(tf.layers.flatten());
  m.add(tf.layers.dense({ units: 256, ...kernel(seeded, m.layers.length) }));
  m.add(batchNormalization());
  m.add(tf.layers.activation({ activation: 'relu' }));
  m.add(dropout(seeded, 0.5, m.layers.length));
  m.add(tf.layers.dense({ units: NUM_CLASSES, ...kernel(seeded, m.layers.length) }));
  return m;
}

/** 784-1200-1200-10, relu. */
export function mlp(): tf.Sequential {
  const m = tf.sequential();
  m.add(tf.layers.flatten({ inputShape: INPUT_SHAPE }));
  m.add(tf.layers.dense({ units: 1200, activation: 'relu' }));
  m.add(tf.layers.dense({ units: 1200, activation: 'relu' }));
  m.add(tf.layers.dense({ units: NUM_CLASSES }));
  return m;
}

/** `seed` fixes big's initial kernels and dropout masks (the model with dropout; tests use it). */
export function buildModel(name: ModelName, seeded: Seeded = {}): tf.Sequential {
  switch (name) {
    case 'seed003':
      return seed003();
    case 'mid':
      return mid();
    case 'big':
      return big(seeded);
    case 'mlp':
      return mlp();
  }
}

/**
 * One Adam step on (x, one-hot y) with softmax cross-entropy on the logits, the way the
 * pipeline's trainer computes it; returns the loss.
 */
export function trainStep(model: tf.Sequential, optimizer: tf.Optimizer, x: tf.Tensor, y: tf.Tensor): tf.Scalar {
  const loss = optimizer.minimize(() => {
    const logits = model.apply(x, { training: true }) as tf.Tensor;
    return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
  }, true);
  if (loss == null) throw new Error('optimizer.minimize returned no loss');
  return loss;
}
