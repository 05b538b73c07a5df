import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { onBoth, seededTensor, useBackend } from './helpers.js';

const cases: { shape: number[]; reps: number[] }[] = [
  { shape: [1, 1, 1, 32], reps: [6, 5, 7, 1] },
  { shape: [2, 3], reps: [3, 4] },
  { shape: [3, 1, 2], reps: [1, 5, 3] },
  { shape: [4], reps: [1] },
  { shape: [5], reps: [7] },
  { shape: [2, 2, 2, 3], reps: [2, 1, 3, 2] },
  { shape: [3, 2], reps: [0, 2] },
];

for (const c of cases) {
  test(`tile [${c.shape}] by [${c.reps}] matches cpu`, async () => {
    const { cpu, wasm } = await onBoth(() => tf.tile(seededTensor(c.shape, 2), c.reps));
    assert.equal(Array.from(wasm), Array.from(cpu));
  });
}

test('tile of int32 and bool tensors', async () => {
  await useBackend('wasm');
  const ints = tf.tile(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), [2, 3]);
  assert.equal(Array.from(ints.dataSync()), Array.from(tf.tidy(() => tf.tile(tf.tensor2d([1, 2, 3, 4], [2, 2], 'float32'), [2, 3]).dataSync())));
  const bools = tf.tile(tf.tensor1d([true, false, true], 'bool'), [3]);
  assert.equal(Array.from(bools.dataSync()), [1, 0, 1, 1, 0, 1, 1, 0, 1]);
  tf.dispose([ints, bools]);
});

test.run();
