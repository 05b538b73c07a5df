import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FastBatchNormalization } from '../../src/models/batch-norm.js';
import { seededTensor } from '../backend/wasm/helpers.js';

// Our batch norm against tfjs's own layer: the same outputs, gradients (x, gamma, beta) and moving
// statistics, on the cpu backend, channels-last images and dense rows.

/** Seeded uniform values in [shift - scale, shift + scale). */
const seeded = (shape: number[], seed: number, scale = 1, shift = 0) => tf.add(seededTensor(shape, seed, scale), shift);

function closeTo(actual: tf.Tensor, expected: tf.Tensor, what: string): void {
  const a = actual.dataSync();
  const e = expected.dataSync();
  assert.equal(actual.shape, expected.shape, `${what}: shape`);
  for (let i = 0; i < e.length; i++) {
    const tolerance = 1e-4 * Math.max(1, Math.abs(e[i]));
    if (!(Math.abs(a[i] - e[i]) <= tolerance)) assert.unreachable(`${what}[${i}]: ${a[i]} vs tfjs ${e[i]}`);
  }
}

function pair(shape: number[], momentum: number) {
  const channels = shape[shape.length - 1];
  const stock = tf.layers.batchNormalization({ momentum, epsilon: 1e-3 });
  const ours = new FastBatchNormalization({ momentum, epsilon: 1e-3 });
  stock.build(shape);
  ours.build(shape);
  const weights = [seeded([channels], 1, 0.5, 1), seeded([channels], 2, 0.5), seeded([channels], 3), seeded([channels], 4, 0.5, 1.5)];
  stock.setWeights(weights);
  ours.setWeights(weights);
  return { stock, ours };
}

/** The gradients of a weighted sum of the training output, as a loss would send them. */
function trainingGrads(layer: tf.layers.Layer, x: tf.Tensor, weight: tf.Tensor) {
  const loss = (input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input, { training: true }) as tf.Tensor, weight)) as tf.Scalar;
  const [gamma, beta] = layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
  const { grads } = tf.variableGrads(() => loss(x), [gamma, beta]);
  return { dx: tf.grad(loss)(x), dgamma: grads[gamma.name], dbeta: grads[beta.name] };
}

for (const shape of [[3, 5, 4, 6], [2, 7, 7, 3], [9, 8]]) {
  test(`training on [${shape}]: the outputs and the gradients of x, gamma and beta are tfjs's`, async () => {
    await tf.setBackend('cpu');
    const { stock, ours } = pair(shape, 0.9);
    const x = seeded(shape, 5, 2, 0.7);
    const weight = seeded(shape, 6);
    const expected = trainingGrads(stock, x, weight);
    const actual = trainingGrads(ours, x, weight);
    closeTo(actual.dx, expected.dx, 'dx');
    closeTo(actual.dgamma, expected.dgamma, 'dgamma');
    closeTo(actual.dbeta, expected.dbeta, 'dbeta');
    closeTo(ours.apply(x, { training: true }) as tf.Tensor, stock.apply(x, { training: true }) as tf.Tensor, 'y (training)');
  });
}

test('the moving statistics move as tfjs moves them, and inference uses them', async () => {
  await tf.setBackend('cpu');
  const shape = [4, 3, 3, 5];
  const { stock, ours } = pair(shape, 0.8);
  for (let step = 0; step < 3; step++) {
    const x = seeded(shape, 10 + step, 3, step);
    stock.apply(x, { training: true });
    ours.apply(x, { training: true });
  }
  const stockWeights = stock.getWeights();
  ours.getWeights().forEach((w, i) => closeTo(w, stockWeights[i], `weight ${stock.weights[i].name}`));
  const x = seeded(shape, 20, 2);
  closeTo(ours.apply(x) as tf.Tensor, stock.apply(x) as tf.Tensor, 'y (inference)');
});

test('saved as tfjs\'s BatchNormalization: model.json names the stock class, with the same config', async () => {
  await tf.setBackend('cpu');
  const model = tf.sequential({ layers: [new FastBatchNormalization({ inputShape: [4], momentum: 0.9 })] });
  const stock = tf.sequential({ layers: [tf.layers.batchNormalization({ inputShape: [4], momentum: 0.9 })] });
  const topology = (m: tf.Sequential) => JSON.parse(JSON.stringify(m.toJSON(null, false))).config.layers[0];
  const ours = topology(model);
  const theirs = topology(stock);
  assert.is(ours.class_name, 'BatchNormalization');
  assert.equal({ ...ours.config, name: '' }, { ...theirs.config, name: '' });
});

test.run();
