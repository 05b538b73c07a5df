import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { onnxruntimeKernelOptions } from '../../../src/backend/onnxruntime/kernels.js';
import { registerOnnxruntimeKernels } from '../../../src/backend/onnxruntime/register.js';
import { sessionCount } from '../../../src/backend/onnxruntime/sessions.js';
import { convShapes, FIXED_CASES, filterGrad, inputGrad, label, randomConvCases } from '../conv-cases.js';
import { describeError, maxError, onBoth, seededTensor } from '../wasm/helpers.js';

// Every kernel onnxruntime takes over, against the cpu backend, on the shapes of the wasm
// kernels' tests plus random ones: strides 1-3, same/valid, batch 1 and odd sizes, 1x1 to 5x5
// filters. The thresholds at 0 send even the tiny cases through onnxruntime instead of the fallback.

registerOnnxruntimeKernels();
const defaults = { ...onnxruntimeKernelOptions };
onnxruntimeKernelOptions.minMacs = 0;
onnxruntimeKernelOptions.minForwardChannels = 0;

const TOLERANCE = 1e-4;


async function expectClose(what: string, fn: () => tf.Tensor): Promise<void> {
  const { cpu, wasm } = await onBoth(fn);
  const e = maxError(wasm, cpu);
  assert.ok(e.rel < TOLERANCE, `${what}: ${describeError(e)}`);
}

[...FIXED_CASES, ...randomConvCases(12, 91)].forEach((c, i) => {
  const s = convShapes(c);
  test(`conv2d forward, filter and input gradients match cpu: ${label(c)}`, async () => {
    for (const method of ['im2col', 'nchw'] as const) {
      onnxruntimeKernelOptions.forwardMethod = method;
      await expectClose(`Conv2D (${method})`, () =>
        tf.conv2d(seededTensor(s.x, 1 + i) as tf.Tensor4D, seededTensor(s.w, 2 + i) as tf.Tensor4D, c.strides, c.pad),
      );
    }
    onnxruntimeKernelOptions.forwardMethod = defaults.forwardMethod;
    // One Gemm over the patch matrix, and one per filter tap (large images).
    for (const maxPatchElements of [Infinity, 0]) {
      onnxruntimeKernelOptions.maxPatchElements = maxPatchElements;
      await expectClose(`Conv2DBackpropFilter (${maxPatchElements ? 'patch matrix' : 'per tap'})`, filterGrad(c, i));
    }
    onnxruntimeKernelOptions.maxPatchElements = defaults.maxPatchElements;
    // Both ways of forming it (col2im exists for stride 1 only; the option falls back otherwise).
    for (const method of ['col2im', 'convTranspose'] as const) {
      onnxruntimeKernelOptions.inputGradMethod = method;
      await expectClose(`Conv2DBackpropInput (${method})`, inputGrad(c, i));
    }
    onnxruntimeKernelOptions.inputGradMethod = defaults.inputGradMethod;
  });
});

for (const activation of ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const) {
  test(`fused conv2d and matMul with bias and ${activation} match cpu, with their gradients`, async () => {
    const c = FIXED_CASES[3];
    const s = convShapes(c);
    for (const method of ['im2col', 'nchw'] as const) {
      onnxruntimeKernelOptions.forwardMethod = method;
      await expectClose(`FusedConv2D (${method})`, () =>
      tf.fused.conv2d({
        x: seededTensor(s.x, 1) as tf.Tensor4D,
        filter: seededTensor(s.w, 2) as tf.Tensor4D,
        strides: c.strides,
        pad: c.pad,
        bias: seededTensor([c.outChannels], 3),
        activation,
        leakyreluAlpha: 0.1,
      }),
      );
    }
    onnxruntimeKernelOptions.forwardMethod = defaults.forwardMethod;
    await expectClose('_FusedMatMul', () =>
      tf.fused.matMul({ a: seededTensor([7, 5], 4) as tf.Tensor2D, b: seededTensor([5, 9], 5) as tf.Tensor2D, bias: seededTensor([9], 6), activation, leakyreluAlpha: 0.1 }),
    );
    for (const which of [0, 1, 2]) {
      await expectClose(`conv gradient ${which}`, () => {
        const weights = seededTensor(s.dy, 7);
        const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor): tf.Tensor =>
          tf.fused
            .conv2d({ x: a as tf.Tensor4D, filter: b as tf.Tensor4D, strides: c.strides, pad: c.pad, bias: d, activation })
            .mul(weights)
            .sum();
        return tf.grads(f)([seededTensor(s.x, 1), seededTensor(s.w, 2), seededTensor([c.outChannels], 3)])[which];
      });
    }
  });
}

for (const [transposeA, transposeB] of [[false, false], [true, false], [false, true], [true, true]]) {
  for (const [m, k, n] of [[1, 1, 1], [7, 5, 9], [128, 576, 64], [3, 1200, 10]]) {
    test(`matMul ${m}x${k} * ${k}x${n} (transposeA ${transposeA}, transposeB ${transposeB}) matches cpu`, async () => {
      const a = transposeA ? [k, m] : [m, k];
      const b = transposeB ? [n, k] : [k, n];
      await expectClose('BatchMatMul', () => tf.matMul(seededTensor(a, m + k), seededTensor(b, n + 1), transposeA, transposeB));
      await expectClose('rank-3 BatchMatMul', () =>
        tf.matMul(seededTensor([1, ...a], 3) as tf.Tensor3D, seededTensor([1, ...b], 4) as tf.Tensor3D, transposeA, transposeB),
      );
    });
  }
}

test('batched products and dilated convolutions fall back to the wasm kernels, correctly', async () => {
  const before = sessionCount();
  assert.ok(before > 20, `the tests above ran through onnxruntime (${before} sessions)`);
  await expectClose('batched matMul', () => tf.matMul(seededTensor([3, 4, 5], 1) as tf.Tensor3D, seededTensor([3, 5, 6], 2) as tf.Tensor3D));
  await expectClose('dilated conv2d', () =>
    tf.conv2d(seededTensor([2, 9, 9, 3], 3) as tf.Tensor4D, seededTensor([3, 3, 3, 4], 4) as tf.Tensor4D, 1, 'same', 'NHWC', 2),
  );
  assert.is(sessionCount(), before, 'no onnxruntime session was built for them');
});

test.run();
