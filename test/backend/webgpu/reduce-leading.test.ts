import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, seededTensor, skipWithoutWebgpu, valuesUnder, type Variant } from './helpers.js';

const TOLERANCE = 1e-5;

let skip = false;
test.before(async () => {
  skip = await skipWithoutWebgpu('reduce-leading.test');
});

/** Compares fn on webgpu with our kernels against stock cpu and stock webgpu. */
async function check(label: string, fn: () => tf.Tensor | tf.Tensor[]): Promise<void> {
  if (skip) return;
  const results: Partial<Record<Variant, Float32Array[]>> = {};
  for (const variant of ['cpu', 'webgpu-stock', 'webgpu-ours'] as const) results[variant] = await valuesUnder(variant, fn);
  results['webgpu-ours']!.forEach((ours, i) => {
    for (const ref of ['cpu', 'webgpu-stock'] as const) {
      const e = maxError(ours, results[ref]![i]);
      assert.ok(e.rel < TOLERANCE, `${label} [${i}] vs ${ref}: ${describeError(e)}`);
    }
  });
}

const cases: { shape: number[]; axis: number[]; keepDims: boolean }[] = [
  { shape: [4, 28, 28, 8], axis: [0, 1, 2], keepDims: false }, // two passes
  { shape: [1, 7, 9, 3], axis: [0, 1, 2], keepDims: true },
  { shape: [3, 5, 5, 70], axis: [2, 0, 1], keepDims: false }, // two channel tiles, unsorted axes
  { shape: [33, 64], axis: [0], keepDims: false },
  { shape: [128, 10], axis: [0], keepDims: true },
  { shape: [300000, 1], axis: [0], keepDims: false },
  { shape: [4, 5, 6, 7], axis: [1, 2], keepDims: false }, // not leading: stock kernel
  { shape: [4, 5, 6, 7], axis: [3], keepDims: true }, // innermost: stock kernel
  { shape: [50], axis: [0], keepDims: false }, // all axes: stock kernel
];

for (const c of cases) {
  test(`sum and mean over [${c.axis}] of [${c.shape}] keepDims=${c.keepDims}`, async () => {
    await check(`${c.shape}`, () => {
      const x = seededTensor(c.shape, 3).add(0.5);
      return [tf.sum(x, c.axis, c.keepDims), tf.mean(x, c.axis, c.keepDims)];
    });
  });
}

test('batch-norm moments and their gradient (as the BatchNormalization layer computes them)', async () => {
  await check('bn', () => {
    const x = seededTensor([6, 14, 14, 16], 9).mul(3).add(1);
    const dy = seededTensor([6, 14, 14, 16], 11);
    const gamma = seededTensor([16], 12).add(1);
    const beta = seededTensor([16], 13);
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    const bn = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
      const m = tf.moments(t, [0, 1, 2]);
      return tf.batchNorm(t, m.mean, m.variance, b, g, 1e-3);
    };
    const grads = tf.grads(bn)([x, gamma, beta], dy);
    return [mean, variance, ...grads];
  });
});

test('int32 sums go to the stock kernel', async () => {
  if (skip) return;
  const [ours] = await valuesUnder('webgpu-ours', () => tf.sum(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), 0));
  assert.equal(Array.from(ours), [4, 6]);
});

test.run();
