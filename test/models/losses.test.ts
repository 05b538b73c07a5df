import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { classificationLoss, parseLossSpec } from '../../src/models/losses.js';

const ce = parseLossSpec('sparseCategoricalCrossentropy');
const value = async (t: tf.Scalar) => (await t.data())[0];

test('cross-entropy from logits equals -log softmax of the true class, by hand', async () => {
  const logits = tf.tensor2d([[2, 1, 0], [0, 0, 3]]);
  const labels = tf.tensor1d([0, 1], 'int32');
  const row1 = -Math.log(Math.exp(2) / (Math.exp(2) + Math.exp(1) + 1));
  const row2 = -Math.log(1 / (2 + Math.exp(3)));
  assert.ok(Math.abs((await value(classificationLoss(ce, labels, logits, false))) - (row1 + row2) / 2) < 1e-6);
});

test('from a softmax output the same loss comes out (within the clipping epsilon)', async () => {
  const logits = tf.tensor2d([[2, 1, 0], [0, 0, 3]]);
  const labels = tf.tensor1d([0, 1], 'int32');
  const fromLogits = await value(classificationLoss(ce, labels, logits, false));
  const fromProbs = await value(classificationLoss(ce, labels, tf.softmax(logits) as tf.Tensor2D, true));
  assert.ok(Math.abs(fromLogits - fromProbs) < 1e-5);
});

test('logits far apart stay finite (log-softmax, not log of softmax)', async () => {
  const loss = await value(classificationLoss(ce, tf.tensor1d([1], 'int32'), tf.tensor2d([[1000, -1000]]), false));
  assert.ok(Number.isFinite(loss) && Math.abs(loss - 2000) < 1e-3, `loss ${loss}`);
});

test('label smoothing mixes the uniform distribution into the target', async () => {
  const smooth = parseLossSpec({ categoricalCrossentropy: { labelSmoothing: 0.3 } });
  const logits = tf.tensor2d([[1, 0]]);
  const logp = [1 - Math.log(Math.E + 1), -Math.log(Math.E + 1)];
  const expected = -(0.85 * logp[0] + 0.15 * logp[1]);
  assert.ok(Math.abs((await value(classificationLoss(smooth, tf.tensor1d([0], 'int32'), logits, false))) - expected) < 1e-6);
});

test.run();
