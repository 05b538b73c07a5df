import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { onnxruntimeKernelOptions } from '../../../src/backend/onnxruntime/kernels.js';
import { registerOnnxruntimeKernels } from '../../../src/backend/onnxruntime/register.js';
import { sessionCount } from '../../../src/backend/onnxruntime/sessions.js';
import { describeError, maxError, onBoth, seededTensor, seededValues } from '../wasm/helpers.js';

// Every kernel onnxruntime takes over, against the cpu backend, on the shapes of the wasm
// kernels' tests plus random ones: strides 1-3, same/valid, batch 1 and odd sizes, 1x1 to 5x5
// filters. The thresholds at 0 send even the tiny cases through onnxruntime instead of the fallback.

registerOnnxruntimeKernels();
onnxruntimeKernelOptions.minMacs = 0;
onnxruntimeKernelOptions.minForwardChannels = 0;

const TOLERANCE = 1e-4;

interface ConvCase {
  batch: number;
  height: number;
  width: number;
  inChannels: number;
  outChannels: number;
  kernel: [number, number];
  strides: [number, number];
  pad: 'same' | 'valid';
}

const label = (c: ConvCase): string =>
  `b${c.batch} ${c.height}x${c.width}x${c.inChannels}->${c.outChannels} k${c.kernel.join('x')} s${c.strides.join(',')} ${c.pad}`;

const fixed: ConvCase[] = [
  { batch: 3, height: 28, width: 28, inChannels: 1, outChannels: 8, kernel: [3, 3], strides: [1, 1], pad: 'valid' },
  { batch: 1, height: 13, width: 13, inChannels: 8, outChannels: 16, kernel: [3, 3], strides: [1, 1], pad: 'valid' },
  { batch: 5, height: 9, width: 7, inChannels: 3, outChannels: 4, kernel: [3, 3], strides: [1, 1], pad: 'same' },
  { batch: 2, height: 11, width: 11, inChannels: 4, outChannels: 6, kernel: [3, 3], strides: [2, 2], pad: 'same' },
  { batch: 3, height: 11, width: 10, inChannels: 4, outChannels: 6, kernel: [3, 3], strides: [2, 2], pad: 'valid' },
  { batch: 1, height: 8, width: 8, inChannels: 2, outChannels: 3, kernel: [2, 2], strides: [2, 2], pad: 'valid' },
  { batch: 3, height: 7, width: 9, inChannels: 5, outChannels: 4, kernel: [5, 5], strides: [1, 1], pad: 'same' },
  { batch: 2, height: 9, width: 9, inChannels: 3, outChannels: 5, kernel: [1, 1], strides: [2, 2], pad: 'same' },
  { batch: 2, height: 10, width: 9, inChannels: 3, outChannels: 4, kernel: [3, 2], strides: [2, 1], pad: 'same' },
  { batch: 1, height: 5, width: 5, inChannels: 3, outChannels: 2, kernel: [4, 4], strides: [1, 1], pad: 'same' },
  { batch: 2, height: 12, width: 13, inChannels: 3, outChannels: 4, kernel: [3, 3], strides: [3, 3], pad: 'valid' },
  { batch: 1, height: 6, width: 6, inChannels: 2, outChannels: 3, kernel: [1, 1], strides: [1, 1], pad: 'valid' },
];

function randomCases(count: number, seed: number): ConvCase[] {
  const r = seededValues(count * 10, seed).map((v) => (v + 1) / 2);
  const pick = <T>(options: T[], u: number): T => options[Math.min(options.length - 1, Math.floor(u * options.length))];
  return Array.from({ length: count }, (_, i) => {
    const u = r.subarray(i * 10, i * 10 + 10);
    const k = pick([1, 2, 3, 3, 5], u[5]);
    const s = pick([1, 2], u[6]);
    return {
      batch: pick([1, 2, 3, 5], u[0]),
      height: 5 + Math.floor(u[1] * 10),
      width: 5 + Math.floor(u[2] * 10),
      inChannels: 1 + Math.floor(u[3] * 6),
      outChannels: 1 + Math.floor(u[4] * 8),
      kernel: [k, k] as [number, number],
      strides: [s, s] as [number, number],
      pad: u[7] < 0.5 ? ('same' as const) : ('valid' as const),
    };
  });
}

function shapes(c: ConvCase) {
  const x: [number, number, number, number] = [c.batch, c.height, c.width, c.inChannels];
  const w: [number, number, number, number] = [c.kernel[0], c.kernel[1], c.inChannels, c.outChannels];
  return { x, w, dy: tf.backend_util.computeConv2DInfo(x, w, c.strides, 1, c.pad).outShape };
}

async function expectClose(what: string, fn: () => tf.Tensor): Promise<void> {
  const { cpu, wasm } = await onBoth(fn);
  const e = maxError(wasm, cpu);
  assert.ok(e.rel < TOLERANCE, `${what}: ${describeError(e)}`);
}

[...fixed, ...randomCases(12, 91)].forEach((c, i) => {
  const s = shapes(c);
  test(`conv2d forward, filter and input gradients match cpu: ${label(c)}`, async () => {
    for (const method of ['im2col', 'nchw'] as const) {
      onnxruntimeKernelOptions.forwardMethod = method;
      await expectClose(`Conv2D (${method})`, () =>
        tf.conv2d(seededTensor(s.x, 1 + i) as tf.Tensor4D, seededTensor(s.w, 2 + i) as tf.Tensor4D, c.strides, c.pad),
      );
    }
    onnxruntimeKernelOptions.forwardMethod = 'auto';
    // One Gemm over the patch matrix, and one per filter tap (large images).
    for (const maxPatchElements of [Infinity, 0]) {
      onnxruntimeKernelOptions.maxPatchElements = maxPatchElements;
      await expectClose(`Conv2DBackpropFilter (${maxPatchElements ? 'patch matrix' : 'per tap'})`, () =>
        tf.engine().runKernel(
          tf.Conv2DBackpropFilter,
          { x: seededTensor(s.x, 10 + i), dy: seededTensor(s.dy, 20 + i) },
          { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: s.w } as unknown as tf.NamedAttrMap,
        ) as tf.Tensor,
      );
    }
    onnxruntimeKernelOptions.maxPatchElements = 8_000_000;
    // Both ways of forming it (col2im exists for stride 1 only; the option falls back otherwise).
    for (const method of ['col2im', 'convTranspose'] as const) {
      onnxruntimeKernelOptions.inputGradMethod = method;
      await expectClose(`Conv2DBackpropInput (${method})`, () =>
        tf.engine().runKernel(
          tf.Conv2DBackpropInput,
          { dy: seededTensor(s.dy, 30 + i), filter: seededTensor(s.w, 40 + i) },
          { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: s.x } as unknown as tf.NamedAttrMap,
        ) as tf.Tensor,
      );
    }
    onnxruntimeKernelOptions.inputGradMethod = 'auto';
  });
});

for (const activation of ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu'] as const) {
  test(`fused conv2d and matMul with bias and ${activation} match cpu, with their gradients`, async () => {
    const c = fixed[3];
    const s = shapes(c);
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
    onnxruntimeKernelOptions.forwardMethod = 'auto';
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
