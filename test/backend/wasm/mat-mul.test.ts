import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, onBoth, seededTensor } from './helpers.js';

const TOLERANCE = 1e-5;

const shapes: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [128, 576, 64],
  [33, 1200, 10],
];

for (const [m, k, n] of shapes) {
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      test(`matMul ${m}x${k}x${n} tA=${transposeA} tB=${transposeB} matches cpu`, async () => {
        const { cpu, wasm } = await onBoth(() => {
          const a = seededTensor(transposeA ? [k, m] : [m, k], m + k);
          const b = seededTensor(transposeB ? [n, k] : [k, n], k + n);
          return tf.matMul(a, b, transposeA, transposeB);
        });
        const e = maxError(wasm, cpu);
        assert.ok(e.rel < TOLERANCE, describeError(e));
      });
    }
  }
}

test('batched and rank-3 products (stock path, and batch 1 of rank 3) match cpu', async () => {
  for (const [aShape, bShape, tA, tB] of [
    [[3, 4, 5], [3, 5, 6], false, false],
    [[3, 5, 4], [3, 6, 5], true, true],
    [[1, 5, 4], [1, 6, 5], true, true],
    [[1, 4, 5], [5, 6], false, false],
  ] as [number[], number[], boolean, boolean][]) {
    const { cpu, wasm, shape } = await onBoth(() => tf.matMul(seededTensor(aShape, 1), seededTensor(bShape, 2), tA, tB));
    const e = maxError(wasm, cpu);
    assert.ok(e.rel < TOLERANCE, `${aShape} x ${bShape}: ${describeError(e)} (shape ${shape})`);
  }
});

test('fused matMul with bias and relu, transposed operands, matches cpu', async () => {
  for (const [tA, tB] of [
    [true, false],
    [false, true],
    [true, true],
  ] as [boolean, boolean][]) {
    const { cpu, wasm } = await onBoth(() =>
      tf.fused.matMul({
        a: seededTensor(tA ? [20, 9] : [9, 20], 1),
        b: seededTensor(tB ? [7, 20] : [20, 7], 2),
        transposeA: tA,
        transposeB: tB,
        bias: seededTensor([7], 3),
        activation: 'relu',
      }),
    );
    const e = maxError(wasm, cpu);
    assert.ok(e.rel < TOLERANCE, `tA=${tA} tB=${tB}: ${describeError(e)}`);
  }
});

test.run();
