import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, onBoth, seededTensor } from './helpers.js';

const TOLERANCE = 1e-5;

const cases: { shape: number[]; axis: number[]; keepDims: boolean }[] = [
  { shape: [5, 26, 26, 32], axis: [0, 1, 2], keepDims: false },
  { shape: [1, 7, 9, 3], axis: [0, 1, 2], keepDims: true },
  { shape: [3, 1, 1, 8], axis: [0, 1, 2], keepDims: false },
  { shape: [2, 3, 1, 5], axis: [2, 0, 1], keepDims: false },
  { shape: [4, 5, 6, 7], axis: [1, 2], keepDims: false },
  { shape: [4, 5, 6, 7], axis: [3], keepDims: true },
  { shape: [33, 64], axis: [0], keepDims: false },
];

for (const c of cases) {
  for (const op of ['sum', 'mean'] as const) {
    test(`${op} over [${c.axis}] of [${c.shape}] keepDims=${c.keepDims} matches cpu`, async () => {
      const { cpu, wasm, shape } = await onBoth(() => {
        const x = seededTensor(c.shape, 3).add(0.5);
        return op === 'sum' ? tf.sum(x, c.axis, c.keepDims) : tf.mean(x, c.axis, c.keepDims);
      });
      const e = maxError(wasm, cpu);
      assert.ok(e.rel < TOLERANCE, `${describeError(e)} (shape ${shape})`);
    });
  }
}

test('batch-norm moments over NHWC match cpu', async () => {
  for (const which of [0, 1]) {
    const { cpu, wasm } = await onBoth(() => {
      const m = tf.moments(seededTensor([6, 14, 14, 16], 9).mul(3).add(1), [0, 1, 2]);
      return which === 0 ? m.mean : m.variance;
    });
    const e = maxError(wasm, cpu);
    assert.ok(e.rel < TOLERANCE, `${which === 0 ? 'mean' : 'variance'}: ${describeError(e)}`);
  }
});

test.run();
