import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { seed003 } from '../../../bench/cpu-train/models.js';
import { describeError, maxError, seededTensor, seededValues, useBackend, type BackendName } from './helpers.js';

// The cpu backend needs ~1 s per seed003 sample for a training step, hence batch 1.
const BATCH = 1;
const STEPS = 3;

interface Run {
  losses: number[];
  /** Gradients of the first step, in model.trainableWeights order. */
  grads: Float32Array[];
  weights: Float32Array[];
}

/** STEPS Adam steps of seed003 from the given weights on one backend. */
async function train(name: BackendName, initial: Float32Array[]): Promise<Run> {
  await useBackend(name);
  const model = seed003();
  model.setWeights(initial.map((v, i) => tf.tensor(v, model.getWeights()[i].shape)));
  const optimizer = tf.train.adam(1e-3);
  const labels = Array.from(seededValues(BATCH, 5), (v) => Math.floor(((v + 1) / 2) * 10) % 10);
  const x = seededTensor([BATCH, 28, 28, 1], 4);
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
  const losses: number[] = [];
  let grads: Float32Array[] = [];
  for (let s = 0; s < STEPS; s++) {
    const { value, grads: g } = tf.variableGrads(() => {
      const logits = model.apply(x, { training: true }) as tf.Tensor;
      return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
    });
    losses.push(value.dataSync()[0]);
    if (s === 0) grads = model.trainableWeights.map((w) => g[w.originalName].dataSync() as Float32Array);
    optimizer.applyGradients(Object.entries(g).map(([name, tensor]) => ({ name, tensor })));
    tf.dispose([value, ...Object.values(g)]);
  }
  const weights = model.getWeights().map((w) => w.dataSync() as Float32Array);
  tf.dispose([x, y]);
  optimizer.dispose();
  model.dispose();
  return { losses, grads, weights };
}

let cpu: Run;
let wasm: Run;
let initial: Float32Array[];

test.before(async () => {
  await useBackend('cpu');
  const reference = seed003();
  initial = reference.getWeights().map((w) => w.dataSync().slice() as Float32Array);
  reference.dispose();
  cpu = await train('cpu', initial);
  wasm = await train('wasm', initial);
});

test('seed003: the gradients of every weight match cpu', () => {
  assert.is(wasm.grads.length, cpu.grads.length);
  cpu.grads.forEach((g, i) => {
    const e = maxError(wasm.grads[i], g);
    assert.ok(e.rel < 1e-4, `gradient ${i}: ${describeError(e)}`);
  });
});

test(`seed003: ${STEPS} Adam steps on wasm end where the same steps on cpu end`, () => {
  for (let s = 0; s < STEPS; s++) {
    const e = maxError([wasm.losses[s]], [cpu.losses[s]]);
    assert.ok(e.rel < 1e-5, `loss at step ${s}: cpu ${cpu.losses[s]} wasm ${wasm.losses[s]}`);
  }
  for (let i = 0; i < initial.length; i++) {
    // Judged against how far the weights moved. Adam divides each gradient by its own running
    // magnitude, so a weight whose gradient nearly cancels turns float rounding into up to a
    // percent of its step; a missing or wrong gradient is off by the whole step.
    const moved = maxError(cpu.weights[i], initial[i]).abs;
    const e = maxError(wasm.weights[i], cpu.weights[i]);
    assert.ok(moved > 0, `weight ${i} did not move on cpu`);
    assert.ok(e.abs / moved < 1e-2, `weight ${i}: ${describeError(e)}, update size ${moved.toExponential(2)}`);
  }
});

test.run();
