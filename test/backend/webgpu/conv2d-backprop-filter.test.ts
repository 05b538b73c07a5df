import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, seededTensor, skipWithoutWebgpu, valuesUnder, type Variant } from './helpers.js';

const TOLERANCE = 1e-5;

let skip = false;
test.before(async () => {
  skip = await skipWithoutWebgpu('conv2d-backprop-filter.test');
});

const cases: { x: [number, number, number, number]; f: [number, number, number, number]; stride: number; pad: 'same' | 'valid' }[] = [
  { x: [2, 12, 12, 1], f: [3, 3, 1, 8], stride: 1, pad: 'same' },
  { x: [3, 10, 10, 6], f: [3, 3, 6, 10], stride: 1, pad: 'same' }, // 540 outputs: 3 tiles
  { x: [2, 11, 9, 4], f: [3, 3, 4, 5], stride: 1, pad: 'valid' },
  { x: [2, 11, 11, 3], f: [3, 3, 3, 4], stride: 2, pad: 'same' },
  { x: [2, 9, 9, 2], f: [5, 3, 2, 3], stride: 2, pad: 'valid' },
  { x: [40, 14, 14, 2], f: [3, 3, 2, 4], stride: 1, pad: 'same' }, // several chunks, then the reduction
];

for (const c of cases) {
  test(`filter gradient x[${c.x}] f[${c.f}] stride ${c.stride} ${c.pad}`, async () => {
    if (skip) return;
    const fn = () => {
      const x = seededTensor(c.x, 1) as tf.Tensor4D;
      const w = seededTensor(c.f, 2) as tf.Tensor4D;
      const conv = (f: tf.Tensor) => tf.conv2d(x, f as tf.Tensor4D, c.stride, c.pad);
      const dy = seededTensor(conv(w).shape, 3);
      return tf.grad(conv)(w, dy);
    };
    const results: Partial<Record<Variant, Float32Array[]>> = {};
    for (const v of ['cpu', 'webgpu-stock', 'webgpu-ours'] as const) results[v] = await valuesUnder(v, fn);
    for (const ref of ['cpu', 'webgpu-stock'] as const) {
      const e = maxError(results['webgpu-ours']![0], results[ref]![0]);
      assert.ok(e.rel < TOLERANCE, `vs ${ref}: ${describeError(e)}`);
    }
  });
}

test.run();
