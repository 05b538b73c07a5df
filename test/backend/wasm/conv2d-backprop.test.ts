import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { filterGradOptions, type FilterGradMethod } from '../../../src/backend/wasm/conv2d-backprop-filter.js';
import { inputGradOptions, type InputGradMethod } from '../../../src/backend/wasm/conv2d-backprop-input.js';
import { patchOptions } from '../../../src/backend/wasm/im2col.js';
import { convShapes, FIXED_CASES, filterGrad, inputGrad, label, randomConvCases, type ConvCase } from '../conv-cases.js';
import { describeError, maxError, onBoth, seededTensor } from './helpers.js';

const TOLERANCE = 1e-4;

const cases = [...FIXED_CASES, ...randomConvCases(14, 77)];

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
  const c = FIXED_CASES[3];
  const s = convShapes(c);
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
