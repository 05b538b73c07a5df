import * as tf from '@tensorflow/tfjs';
import { seededTensor, seededValues } from './wasm/helpers.js';

// The convolution shapes every backend's kernels are checked on against the cpu backend: fixed
// ones (seed003's first layers, strides 1-3, same/valid, batch 1, odd sizes, 1x1 to 5x5 filters)
// and seeded random ones, with the gradient kernels run directly on seeded inputs.

export interface ConvCase {
  batch: number;
  height: number;
  width: number;
  inChannels: number;
  outChannels: number;
  kernel: [number, number];
  strides: [number, number];
  pad: 'same' | 'valid';
}

export const label = (c: ConvCase): string =>
  `b${c.batch} ${c.height}x${c.width}x${c.inChannels}->${c.outChannels} k${c.kernel.join('x')} s${c.strides.join(',')} ${c.pad}`;

export const FIXED_CASES: ConvCase[] = [
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

export function randomConvCases(count: number, seed: number): ConvCase[] {
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

export function convShapes(c: ConvCase): { x: [number, number, number, number]; w: [number, number, number, number]; dy: number[] } {
  const x: [number, number, number, number] = [c.batch, c.height, c.width, c.inChannels];
  const w: [number, number, number, number] = [c.kernel[0], c.kernel[1], c.inChannels, c.outChannels];
  return { x, w, dy: tf.backend_util.computeConv2DInfo(x, w, c.strides, 1, c.pad).outShape };
}

/** Conv2DBackpropFilter of case `c` on inputs seeded from `i`. */
export function filterGrad(c: ConvCase, i: number): () => tf.Tensor {
  const s = convShapes(c);
  return () =>
    tf.engine().runKernel(
      tf.Conv2DBackpropFilter,
      { x: seededTensor(s.x, 10 + i), dy: seededTensor(s.dy, 20 + i) },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: s.w } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}

/** Conv2DBackpropInput of case `c` on inputs seeded from `i`. */
export function inputGrad(c: ConvCase, i: number): () => tf.Tensor {
  const s = convShapes(c);
  return () =>
    tf.engine().runKernel(
      tf.Conv2DBackpropInput,
      { dy: seededTensor(s.dy, 30 + i), filter: seededTensor(s.w, 40 + i) },
      { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', inputShape: s.x } as unknown as tf.NamedAttrMap,
    ) as tf.Tensor;
}
