import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeError, maxError, onBoth, seededTensor, seededValues, useBackend } from './helpers.js';

const TOLERANCE = 1e-4;

interface DepthwiseCase {
  shape: [number, number, number, number];
  kernel: [number, number];
  multiplier: number;
  strides: [number, number];
  pad: 'same' | 'valid';
}

const cases: DepthwiseCase[] = [
  { shape: [3, 9, 9, 4], kernel: [3, 3], multiplier: 1, strides: [1, 1], pad: 'same' },
  { shape: [1, 10, 11, 3], kernel: [3, 3], multiplier: 2, strides: [2, 2], pad: 'same' },
  { shape: [2, 11, 9, 2], kernel: [3, 3], multiplier: 3, strides: [2, 2], pad: 'valid' },
  { shape: [5, 7, 7, 1], kernel: [5, 5], multiplier: 4, strides: [1, 1], pad: 'same' },
  { shape: [2, 8, 9, 3], kernel: [2, 3], multiplier: 1, strides: [1, 2], pad: 'valid' },
];

function label(c: DepthwiseCase): string {
  return (
    `${c.shape.join('x')} k${c.kernel.join('x')} m${c.multiplier} s${c.strides.join(',')} ${c.pad}`
  );
}

cases.forEach((c, i) => {
  test(`depthwise conv2d gradients match cpu: ${label(c)}`, async () => {
    const wShape = [c.kernel[0], c.kernel[1], c.shape[3], c.multiplier];
    for (const which of [0, 1]) {
      const { cpu, wasm } = await onBoth(() => {
        const x = seededTensor(c.shape, 3 + i);
        const w = seededTensor(wShape, 13 + i);
        const conv = (a: tf.Tensor, b: tf.Tensor): tf.Tensor =>
          tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.strides, c.pad);
        const weights = seededTensor(conv(x, w).shape, 23 + i);
        return tf.grads((a: tf.Tensor, b: tf.Tensor) => conv(a, b).mul(weights).sum())([x, w])[which];
      });
      const e = maxError(wasm, cpu);
      assert.ok(e.rel < TOLERANCE, `${which === 0 ? 'dx' : 'dW'}: ${describeError(e)}`);
    }
  });
});

// The cpu kernels ignore dilation, so dilation is checked against its definition instead: a
// filter dilated by 2 is the same as a filter twice the size with zeros between its taps.
test('dilated depthwise gradients equal those of the zero-spread filter (wasm)', async () => {
  await useBackend('wasm');
  const [batch, size, channels, multiplier] = [2, 9, 3, 2];
  const xShape: [number, number, number, number] = [batch, size, size, channels];
  const small = [3, 3, channels, multiplier];
  const spreadShape: [number, number, number, number] = [5, 5, channels, multiplier];
  const smallValues = seededValues(small.reduce((a, b) => a * b, 1), 8);
  const spreadValues = new Float32Array(spreadShape.reduce((a, b) => a * b, 1));
  const tapSize = channels * multiplier;
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      spreadValues.set(smallValues.subarray((i * 3 + j) * tapSize, (i * 3 + j + 1) * tapSize), (2 * i * 5 + 2 * j) * tapSize);
    }
  }
  const run = (name: string, inputs: tf.NamedTensorMap, attrs: Record<string, unknown>): Float32Array =>
    tf.tidy(() => (tf.engine().runKernel(name, inputs, attrs as tf.NamedAttrMap) as tf.Tensor).dataSync() as Float32Array);
  const x = seededTensor(xShape, 1);
  const dy = seededTensor([batch, size, size, channels * multiplier], 2);
  const common = { strides: [1, 1], pad: 'same' };
  const dxDilated = run(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: tf.tensor(smallValues, small) }, { ...common, dilations: [2, 2], inputShape: xShape });
  const dxSpread = run(tf.DepthwiseConv2dNativeBackpropInput, { dy, filter: tf.tensor(spreadValues, spreadShape) }, { ...common, dilations: [1, 1], inputShape: xShape });
  const e1 = maxError(dxDilated, dxSpread);
  assert.ok(e1.rel < TOLERANCE, `dx: ${describeError(e1)}`);
  const dwDilated = run(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...common, dilations: [2, 2], filterShape: small });
  const dwSpread = run(tf.DepthwiseConv2dNativeBackpropFilter, { x, dy }, { ...common, dilations: [1, 1], filterShape: spreadShape });
  const picked = new Float32Array(dwDilated.length);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      picked.set(dwSpread.subarray((2 * i * 5 + 2 * j) * tapSize, (2 * i * 5 + 2 * j + 1) * tapSize), (i * 3 + j) * tapSize);
    }
  }
  const e2 = maxError(dwDilated, picked);
  assert.ok(e2.rel < TOLERANCE, `dW: ${describeError(e2)}`);
  tf.dispose([x, dy]);
});

test.run();
