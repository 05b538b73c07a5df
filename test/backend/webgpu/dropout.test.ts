import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { dropoutMask } from '../../../src/backend/webgpu/dropout.js';
import { createRng } from '../../../src/random.js';
import { seededTensor, skipWithoutWebgpu, useVariant } from './helpers.js';

// A random mask cannot match the stock one value for value; what must hold is tf.dropout's
// arithmetic (values 0 or x / keepProb, as float32), the keep rate, reproducibility from the seed,
// and the gradient.

let skip = false;
test.before(async () => {
  skip = await skipWithoutWebgpu('dropout.test');
});

test('mask: only 0 and 1/keepProb, keep rate within 4 sigma, same seed same mask', async () => {
  if (skip) return;
  await useVariant('webgpu-ours');
  for (const rate of [0.25, 0.5, 0.9]) {
    const keep = Math.fround(1 - rate);
    const size = 20000;
    const a = await dropoutMask([4, 50, 100], rate, 0.123).data();
    const b = await dropoutMask([4, 50, 100], rate, 0.123).data();
    const c = await dropoutMask([4, 50, 100], rate, 0.456).data();
    const scale = Math.fround(1 / keep);
    let kept = 0;
    let differ = 0;
    for (let i = 0; i < size; i++) {
      assert.ok(a[i] === 0 || Math.abs(a[i] - scale) <= 1e-6 * scale, `value ${a[i]} at ${i}`);
      if (a[i] !== 0) kept++;
      if (a[i] !== c[i]) differ++;
    }
    assert.equal(Array.from(a), Array.from(b));
    const sigma = Math.sqrt(size * keep * (1 - keep));
    assert.ok(Math.abs(kept - size * keep) < 4 * sigma, `rate ${rate}: kept ${kept} of ${size}`);
    assert.ok(differ > size * 2 * keep * (1 - keep) * 0.8, `another seed changed only ${differ} values`);
  }
});

async function layerRun(seed: number): Promise<{ out: Float32Array; grad: Float32Array; x: Float32Array }> {
  const original = Math.random;
  Math.random = createRng(seed, 'dropout-test');
  try {
    const layer = tf.layers.dropout({ rate: 0.3 });
    const x = seededTensor([2, 7, 7, 16], 5);
    const out = tf.tidy(() => layer.apply(x, { training: true }) as tf.Tensor);
    const grad = tf.grad((t: tf.Tensor) => tf.sum(layer.apply(t, { training: true }) as tf.Tensor))(x);
    const result = { out: Float32Array.from(await out.data()), grad: Float32Array.from(await grad.data()), x: Float32Array.from(await x.data()) };
    tf.dispose([x, out, grad]);
    return result;
  } finally {
    Math.random = original;
  }
}

test('Dropout layer on webgpu: x/keepProb or 0, gradient is the mask, seeded runs repeat, inference is identity', async () => {
  if (skip) return;
  await useVariant('webgpu-ours');
  const r1 = await layerRun(7);
  const r2 = await layerRun(7);
  assert.equal(Array.from(r1.out), Array.from(r2.out));
  const keep = Math.fround(1 - 0.3);
  const scale = Math.fround(1 / keep);
  let kept = 0;
  r1.out.forEach((y, i) => {
    if (y !== 0) {
      kept++;
      assert.ok(Math.abs(y - Math.fround(r1.x[i] * scale)) <= 1e-6 * Math.abs(y), `out[${i}] = ${y}, x = ${r1.x[i]}`);
    }
  });
  assert.ok(kept > 0.6 * r1.out.length && kept < 0.8 * r1.out.length, `kept ${kept}`);
  r1.grad.forEach((g) => assert.ok(g === 0 || Math.abs(g - scale) <= 1e-6 * scale, `grad ${g}`));
  const layer = tf.layers.dropout({ rate: 0.3 });
  const x = seededTensor([3, 5], 1);
  assert.equal(Array.from(await (layer.apply(x, { training: false }) as tf.Tensor).data()), Array.from(await x.data()));
});

test('Dropout layer on cpu keeps the stock path', async () => {
  await useVariant('cpu');
  const layer = tf.layers.dropout({ rate: 0.5 });
  const y = (await (layer.apply(tf.ones([1000]), { training: true }) as tf.Tensor).data()) as Float32Array;
  assert.ok(y.every((v) => v === 0 || v === 2));
});

test.run();
