import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { registerDeviceSideGradients } from '../../src/backend/gradients.js';

// Gradients computed with tfjs-core's own Sum/Mean gradients first, then with ours: they must agree
// bit for bit, for reductions over leading, trailing and middle axes, with and without keepDims.
const cases: { shape: number[]; axis: number | number[]; keepDims: boolean }[] = [
  { shape: [4, 5, 6, 3], axis: [0, 1, 2], keepDims: false },
  { shape: [4, 5, 6, 3], axis: [0, 1, 2], keepDims: true },
  { shape: [7, 3], axis: 0, keepDims: false },
  { shape: [7, 3], axis: -1, keepDims: true },
  { shape: [2, 3, 4], axis: 1, keepDims: false },
  { shape: [5], axis: 0, keepDims: false },
];

async function gradients(): Promise<Float32Array[]> {
  const results: Float32Array[] = [];
  for (const { shape, axis, keepDims } of cases) {
    const x = tf.randomNormal(shape, 0, 1, 'float32', 11);
    const weights = tf.randomNormal(tf.sum(x, axis, keepDims).shape, 0, 1, 'float32', 12);
    for (const reduce of [tf.sum, tf.mean]) {
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(reduce(t, axis, keepDims), weights)))(x);
      results.push((await g.data()) as Float32Array);
    }
  }
  // And a batch-norm layer in training mode, the case the change is for.
  const layer = tf.layers.batchNormalization({ momentum: 0.9 });
  const x = tf.randomNormal([3, 4, 4, 2], 0, 1, 'float32', 13);
  const dy = tf.randomNormal([3, 4, 4, 2], 0, 1, 'float32', 14);
  const g = tf.grad((t: tf.Tensor) => layer.apply(t, { training: true }) as tf.Tensor)(x, dy);
  results.push((await g.data()) as Float32Array);
  return results;
}

test('Sum and Mean gradients without the CPU-filled ones tensor agree bit for bit with tfjs-core', async () => {
  await tf.setBackend('cpu');
  const stock = await gradients();
  registerDeviceSideGradients();
  const ours = await gradients();
  assert.is(ours.length, stock.length);
  stock.forEach((expected, i) => assert.equal(Array.from(ours[i]), Array.from(expected), `case ${i}`));
});

test.run();
