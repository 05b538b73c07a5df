import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FusedAdamOptimizer } from '../../../src/backend/webgpu/fused-adam.js';
import { describeError, maxError, seededValues, skipWithoutWebgpu, useVariant, type Variant } from './helpers.js';

const SHAPES = [[3, 3, 2, 4], [4], [10], [33, 7], [1000]];
const STEPS = 4;
const TOLERANCE = 2e-6;

/** Variables after STEPS Adam steps with fixed gradients; fused chooses our optimizer. */
async function train(variant: Variant, fused: boolean, opts: [number, number, number, number]): Promise<Float32Array[]> {
  await useVariant(variant);
  const vars = SHAPES.map((s, i) => tf.variable(tf.tensor(seededValues(s.reduce((a, b) => a * b, 1), 10 + i), s)));
  const opt = fused ? new FusedAdamOptimizer(...opts) : tf.train.adam(...opts);
  for (let step = 0; step < STEPS; step++) {
    const grads = vars.map((v, i) => ({
      name: v.name,
      tensor: tf.tensor(seededValues(v.size, 100 * step + i, step === 2 ? 1e-3 : 1), v.shape),
    }));
    opt.applyGradients(grads);
    tf.dispose(grads.map((g) => g.tensor));
  }
  const values = await Promise.all(vars.map(async (v) => Float32Array.from(await v.data())));
  opt.dispose();
  tf.dispose(vars);
  return values;
}

const CONFIGS: [number, number, number, number][] = [
  [1e-3, 0.9, 0.999, 1e-7],
  [0.05, 0.8, 0.99, 1e-3],
];

let skip = false;
test.before(async () => {
  skip = await skipWithoutWebgpu('fused-adam.test');
});

for (const config of CONFIGS) {
  test(`fused Adam ${config} matches tf.train.adam on cpu and on webgpu`, async () => {
    const cpuStock = await train('cpu', false, config);
    const cpuOurs = await train('cpu', true, config);
    cpuOurs.forEach((v, i) => assert.ok(maxError(v, cpuStock[i]).rel < TOLERANCE, `cpu ops path, var ${i}: ${describeError(maxError(v, cpuStock[i]))}`));
    if (skip) return;
    const gpuStock = await train('webgpu-stock', false, config);
    const gpuOurs = await train('webgpu-ours', true, config);
    gpuOurs.forEach((v, i) => {
      const vsCpu = maxError(v, cpuStock[i]);
      const vsGpu = maxError(v, gpuStock[i]);
      assert.ok(vsCpu.rel < TOLERANCE, `var ${i} vs cpu stock: ${describeError(vsCpu)}`);
      assert.ok(vsGpu.rel < TOLERANCE, `var ${i} vs webgpu stock: ${describeError(vsGpu)}`);
    });
  });
}

test('fused Adam: minimize(f, true, varList) works and leaves clones of a variable alone', async () => {
  if (skip) return;
  await useVariant('webgpu-ours');
  const w = tf.variable(tf.tensor1d([1, -2, 3]));
  const kept = tf.clone(w);
  const opt = new FusedAdamOptimizer(0.1, 0.9, 0.999, 1e-7);
  const cost = opt.minimize(() => tf.sum(tf.square(w)), true, [w])!;
  assert.ok(Math.abs((await cost.data())[0] - 14) < 1e-5);
  assert.equal(Array.from(await kept.data()), [1, -2, 3]);
  const after = Array.from(await w.data());
  // First Adam step moves every weight by ~lr against the sign of its gradient.
  after.forEach((x, i) => assert.ok(Math.abs(Math.abs(x - [1, -2, 3][i]) - 0.1) < 1e-4, `w[${i}] = ${x}`));
  assert.equal((await opt.getWeights()).length, 3);
  tf.dispose([w, kept, cost]);
  opt.dispose();
});

test.run();
