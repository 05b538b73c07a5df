import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, onBoth, seededTensor } from './helpers.js';

const TOLERANCE = 1e-5;

interface PoolCase {
  shape: [number, number, number, number];
  size: [number, number];
  strides: [number, number];
  pad: 'same' | 'valid';
}

const cases: PoolCase[] = [
  { shape: [3, 26, 26, 4], size: [2, 2], strides: [2, 2], pad: 'valid' },
  { shape: [1, 11, 11, 3], size: [2, 2], strides: [2, 2], pad: 'valid' },
  { shape: [2, 11, 9, 3], size: [2, 2], strides: [2, 2], pad: 'same' },
  { shape: [5, 7, 7, 2], size: [3, 3], strides: [2, 2], pad: 'same' },
  { shape: [2, 9, 8, 5], size: [3, 3], strides: [1, 1], pad: 'same' },
  { shape: [1, 10, 9, 1], size: [3, 2], strides: [2, 1], pad: 'valid' },
  { shape: [3, 6, 6, 3], size: [2, 2], strides: [1, 1], pad: 'valid' },
  { shape: [2, 10, 11, 3], size: [2, 2], strides: [3, 3], pad: 'valid' },
  { shape: [2, 9, 9, 2], size: [3, 3], strides: [3, 3], pad: 'same' },
];

function label(c: PoolCase): string {
  return `${c.shape.join('x')} pool${c.size.join('x')} s${c.strides.join(',')} ${c.pad}`;
}

/** sum(pool(x) * w): its gradient wrt x is exactly the pool-grad kernel applied to w. */
function poolGrad(kind: 'max' | 'avg', c: PoolCase, x: tf.Tensor): tf.Tensor {
  const pool = (a: tf.Tensor): tf.Tensor =>
    kind === 'max'
      ? tf.maxPool(a as tf.Tensor4D, c.size, c.strides, c.pad)
      : tf.avgPool(a as tf.Tensor4D, c.size, c.strides, c.pad);
  const outShape = pool(x).shape;
  const w = seededTensor(outShape, 99);
  return tf.grad((a: tf.Tensor) => pool(a).mul(w).sum())(x);
}

cases.forEach((c, i) => {
  for (const kind of ['max', 'avg'] as const) {
    test(`${kind}PoolGrad matches cpu: ${label(c)}`, async () => {
      const { cpu, wasm } = await onBoth(() => poolGrad(kind, c, seededTensor(c.shape, 5 + i)));
      const e = maxError(wasm, cpu);
      assert.ok(e.rel < TOLERANCE, describeError(e));
    });
  }
});

test('MaxPoolGrad routes the gradient of all-negative and all-zero windows like cpu', async () => {
  // Windows: mixed, all negative, all zero (relu output), ties.
  const values = [1, 5, -1, -2, 0.5, 0.7, -3, -0.5, 0, 0, 2, 2, 0, 0, 2, 2];
  const c: PoolCase = { shape: [1, 4, 4, 1], size: [2, 2], strides: [2, 2], pad: 'valid' };
  const { cpu, wasm } = await onBoth(() => poolGrad('max', c, tf.tensor4d(values, c.shape)));
  assert.equal(Array.from(wasm), Array.from(cpu));
  assert.is(cpu.reduce((a, b) => a + (b !== 0 ? 1 : 0), 0), 4, 'each window passes its gradient to one pixel');
});

test.run();
