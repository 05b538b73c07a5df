import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, seededValues, skipWithoutWebgpu, useVariant, valuesUnder } from './helpers.js';

// CPU-built tensors reach the GPU through queue.writeBuffer into pooled buffers (uploads.ts): every
// dtype must arrive intact, and a pooled buffer handed out again must never show old contents.

let skip = false;
test.before(async () => {
  skip = await skipWithoutWebgpu('uploads.test');
});

test('float32, int32 and bool values built on the CPU arrive intact, through ops and a training step', async () => {
  if (skip) return;
  const fn = () => {
    const x = tf.tensor2d(seededValues(6 * 5, 1), [6, 5]);
    const labels = tf.tensor1d([0, 2, 1, 2, 0, 1], 'int32');
    const mask = tf.tensor1d([true, false, true, true, false, true], 'bool');
    const w = tf.variable(tf.tensor2d(seededValues(5 * 3, 2), [5, 3]));
    const loss = () => {
      const logits = tf.matMul(x, w);
      const perRow = tf.losses.softmaxCrossEntropy(tf.oneHot(labels, 3), logits, undefined, tf.Reduction.NONE);
      return tf.mean(tf.where(mask, perRow, tf.zerosLike(perRow))) as tf.Scalar;
    };
    const { value, grads } = tf.variableGrads(loss);
    const out = [value, grads[w.name], tf.add(labels, tf.scalar(3, 'int32')).toFloat(), tf.cast(mask, 'float32')];
    w.dispose();
    return out;
  };
  const cpu = await valuesUnder('cpu', fn);
  const ours = await valuesUnder('webgpu-ours', fn);
  for (let i = 0; i < cpu.length; i++) {
    const e = maxError(ours[i], cpu[i]);
    assert.ok(e.rel < 1e-5, `output ${i}: ${describeError(e)}`);
  }
});

test('pooled buffers are reused across many small uploads without mixing contents', async () => {
  if (skip) return;
  await useVariant('webgpu-ours');
  for (let round = 0; round < 300; round++) {
    const a = tf.tensor1d([round, round + 1, round + 2, round + 3]);
    const b = tf.scalar(round * 10);
    const sum = tf.add(a, b);
    assert.equal(Array.from(await sum.data()), [11 * round, 11 * round + 1, 11 * round + 2, 11 * round + 3]);
    tf.dispose([a, b, sum]);
  }
});

test.run();
