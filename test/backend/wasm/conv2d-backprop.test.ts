import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { filterGradOptions, type FilterGradMethod } from '../../../src/backend/wasm/conv2d-backprop-filter.js';
import { inputGradOptions, type InputGradMethod } from '../../../src/backend/wasm/conv2d-backprop-input.js';
import { patchOptions } from '../../../src/backend/wasm/im2col.js';
import { describeError, maxError, onBoth, seededTensor, seededValues } from './helpers.js';

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

function label(c: ConvCase): string {
  return (
    `b${c.batch} ${c.height}x${c.width}x${c.inChannels}->${c.outChannels} ` +
    `k${c.kernel.join('x')} s${c.strides.join(',')} ${c.pad}`
  );
}

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
];

function randomCases(count: number, seed: number): ConvCase[] {
  const r = seededValues(count * 10, seed).map((v) => (v + 1) / 2);
  const pick = <T>(options: T[], u: number): T => options[Math.min(options.length - 1, Math.floor(u * options.length))];
  const cases: ConvCase[] = [];
  for (let i = 0; i < count; i++) {
    const u = r.subarray(i * 10, i * 10 + 10);
    const height = 5 + Math.floor(u[1] * 10);
    const width = 5 + Math.floor(u[2] * 10);
    const k = pick([1, 2, 3, 3, 5], u[5]);
    const s = pick([1, 2], u[6]);
    cases.push({
      batch: pick([1, 2, 3, 5], u[0]),
      height,
      width,
      inChannels: 1 + Math.floor(u[3] * 6),
      outChannels: 1 + Math.floor(u[4] * 8),
      kernel: [k, k],
      strides: [s, s],
      pad: u[7] < 0.5 ? 'same' : 'valid',
    });
  }
  return cases;
}

const cases = [...fixed, ...randomCases(14, 77)];

function shapes(c: ConvCase): { x: [number, number, number, number]; w: [number, number, number, number]; dy: number[] } {
  const x: [number, number, number, number] = [c.batch, c.height, c.width, c.inChannels];
  const w: [number, number, number, number] = [c.kernel[0], c.kernel[1], c.inChannels, c.outChannels];
  const info = tf.backend_util.computeConv2DInfo(x, w, c.strides, 1, c.pad);
  return { x, w, dy: info.outShape };
}

function filterGrad(c: ConvCase, i: number): () => tf.Tensor {
  const s = shapes(c);
  return () =>
    tf.engine().runKernel(
      tf.Conv2DBackpropFilter,
      { x: seededTensor(s.x, 10 + i), dy: seededTensor(s.dy, 20 + i) },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: s.w } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}

function inputGrad(c: ConvCase, i: number): () => tf.Tensor {
  const s = shapes(c);
  return () =>
    tf.engine().runKernel(
      tf.Conv2DBackpropInput,
      { dy: seededTensor(s.dy, 30 + i), filter: seededTensor(s.w, 40 + i) },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: s.x } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}

// Every case through every method (the automatic choice would leave some paths untested).
cases.forEach((c, i) => {
  for (const method of ['auto', 'im2col', 'conv'] as FilterGradMethod[]) {
    test(`Conv2DBackpropFilter (${method}) matches cpu: ${label(c)}`, async () => {
      filterGradOptions.method = method;
      try {
        const { cpu, wasm } = await onBoth(filterGrad(c, i));
        const e = maxError(wasm, cpu);
        assert.ok(e.rel < TOLERANCE, describeError(e));
      } finally {
        filterGradOptions.method = 'auto';
      }
    });
  }
  for (const method of ['auto', 'col2im', 'conv'] as InputGradMethod[]) {
    test(`Conv2DBackpropInput (${method}) matches cpu: ${label(c)}`, async () => {
      inputGradOptions.method = method;
      try {
        const { cpu, wasm } = await onBoth(inputGrad(c, i));
        const e = maxError(wasm, cpu);
        assert.ok(e.rel < TOLERANCE, describeError(e));
      } finally {
        inputGradOptions.method = 'auto';
      }
    });
  }
});

test('patch matrices split into slabs of images give the same gradients', async () => {
  const c: ConvCase = { batch: 5, height: 9, width: 8, inChannels: 3, outChannels: 4, kernel: [3, 3], strides: [1, 1], pad: 'same' };
  const wide: ConvCase = { ...c, outChannels: 40 };
  const saved = patchOptions.maxElements;
  try {
    for (const [kase, kind] of [[c, 'filter'], [wide, 'filter'], [c, 'input']] as [ConvCase, string][]) {
      patchOptions.maxElements = 1 << 30;
      filterGradOptions.method = 'im2col';
      inputGradOptions.method = 'col2im';
      const run = kind === 'filter' ? filterGrad(kase, 1) : inputGrad(kase, 1);
      const whole = await onBoth(run);
      patchOptions.maxElements = 1000; // one image per slab
      const slabs = await onBoth(run);
      const e = maxError(slabs.wasm, whole.cpu);
      assert.ok(e.rel < TOLERANCE, `${kind} (${kase.outChannels} out): ${describeError(e)}`);
    }
  } finally {
    patchOptions.maxElements = saved;
    filterGradOptions.method = 'auto';
    inputGradOptions.method = 'auto';
  }
});

test('gradients of a fused conv2d (bias + relu) match cpu, through tf.grads', async () => {
  const c = fixed[3];
  const s = shapes(c);
  for (const which of [0, 1, 2]) {
    const { cpu, wasm } = await onBoth(() => {
      const x = seededTensor(s.x, 1);
      const w = seededTensor(s.w, 2);
      const bias = seededTensor([c.outChannels], 3);
      const weights = seededTensor(s.dy, 4);
      const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor): tf.Tensor =>
        tf.fused
          .conv2d({ x: a as tf.Tensor4D, filter: b as tf.Tensor4D, strides: c.strides, pad: c.pad, bias: d, activation: 'relu' })
          .mul(weights)
          .sum();
      return tf.grads(f)([x, w, bias])[which];
    });
    const e = maxError(wasm, cpu);
    assert.ok(e.rel < TOLERANCE, `grad ${which}: ${describeError(e)}`);
  }
});

test.run();
