import { quantizeAffine, quantizeFloat16 } from '../../src/compress/quantization.js';
import type { ConstTensor, ExportGraph, GraphActivation, GraphOp, Padding, Pair } from '../../src/export/graph-ir.js';
import { float16BitsToNumber } from '../../src/export/tfjs-graph.js';
import { createRng, type Rng } from '../../src/random.js';

// Hand-built ExportGraphs for the TensorFlow writers' tests: between them every op kind, every
// activation fused and unfused, SAME/VALID with strides and dilation, a depthwise multiplier of 2,
// and uint8/uint16/float16-quantized constants.

export function randomValues(n: number, rng: Rng, scale = 0.5): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rng() * 2 - 1) * scale;
  return out;
}

export function constant(name: string, shape: number[], rng: Rng, scale = 0.5): ConstTensor {
  return { name, shape, values: randomValues(shape.reduce((a, b) => a * b, 1), rng, scale) };
}

/** Random values quantized as tensorflowjs_converter would, and the dequantized values tfjs loads. */
export function quantized(name: string, shape: number[], rng: Rng, dtype: 'uint8' | 'uint16' | 'float16'): ConstTensor {
  const raw = randomValues(shape.reduce((a, b) => a * b, 1), rng);
  const values = new Float32Array(raw.length);
  if (dtype === 'float16') {
    const { entry, data } = quantizeFloat16(raw);
    data.forEach((bits, i) => (values[i] = float16BitsToNumber(bits)));
    return { name, shape, values, quantization: entry };
  }
  const { entry, data } = quantizeAffine(raw, dtype);
  // Exactly tfjs's decodeWeights: float64 arithmetic, stored to float32.
  data.forEach((q, i) => (values[i] = q * entry.scale! + entry.min!));
  return { name, shape, values, quantization: entry };
}

function conv(
  name: string,
  rng: Rng,
  [kh, kw, cin, cout]: [number, number, number, number],
  o: { strides?: Pair; dilations?: Pair; padding?: Padding; bias?: boolean; activation?: GraphActivation } = {},
): GraphOp {
  return {
    op: 'conv2d',
    name,
    kernel: constant(`${name}/kernel`, [kh, kw, cin, cout], rng),
    bias: o.bias === false ? undefined : constant(`${name}/bias`, [cout], rng),
    strides: o.strides ?? [1, 1],
    dilations: o.dilations ?? [1, 1],
    padding: o.padding ?? 'same',
    activation: o.activation ?? 'linear',
  };
}

/** Convolutions: every activation, fused (bias + linear/relu/relu6/elu) and not, strides, dilation, SAME/VALID. */
export function convGraph(): ExportGraph {
  const rng = createRng(1, 'tf-graphs:conv');
  return {
    input: { name: 'input', shape: [null, 16, 16, 3], dtype: 'float32' },
    output: { name: 'probabilities', shape: [null, 5], dtype: 'float32' },
    ops: [
      conv('c1', rng, [3, 3, 3, 4], { strides: [2, 2], activation: 'relu' }), // 8x8x4
      conv('c2', rng, [3, 3, 4, 4], { padding: 'valid', dilations: [2, 2], bias: false }), // 4x4x4
      conv('c3', rng, [1, 1, 4, 5], { activation: 'relu6' }), // 4x4x5
      conv('c4', rng, [3, 3, 5, 4], { strides: [1, 2], activation: 'elu' }), // 4x2x4
      conv('c5', rng, [2, 2, 4, 3], { padding: 'valid', activation: 'sigmoid' }), // 3x1x3
      conv('c6', rng, [1, 1, 3, 3], { activation: 'tanh' }),
      conv('c7', rng, [1, 1, 3, 3], { bias: false, activation: 'relu' }),
      conv('c8', rng, [3, 1, 3, 3], { strides: [2, 1], padding: 'valid' }), // 1x1x3
      conv('c9', rng, [1, 1, 3, 3], { activation: 'softmax' }),
      { op: 'reshape', name: 'flatten', shape: [3] },
      { op: 'dense', name: 'logits', kernel: constant('logits/kernel', [3, 5], rng), bias: constant('logits/bias', [5], rng), activation: 'softmax' },
    ],
  };
}

/** Depthwise (multiplier 2, strides, dilation), pools, global pools, dense fused and not, activation ops. */
export function depthwiseGraph(): ExportGraph {
  const rng = createRng(2, 'tf-graphs:depthwise');
  const dw = (name: string, shape: [number, number, number, number], o: { strides?: Pair; dilations?: Pair; padding?: Padding; bias?: boolean; activation?: GraphActivation }): GraphOp => ({
    op: 'depthwiseConv2d',
    name,
    kernel: constant(`${name}/depthwise_kernel`, shape, rng),
    bias: o.bias === false ? undefined : constant(`${name}/bias`, [shape[2] * shape[3]], rng),
    strides: o.strides ?? [1, 1],
    dilations: o.dilations ?? [1, 1],
    padding: o.padding ?? 'same',
    activation: o.activation ?? 'linear',
  });
  return {
    input: { name: 'image', shape: [null, 10, 10, 3], dtype: 'float32' },
    output: { name: 'scores', shape: [null, 3], dtype: 'float32' },
    ops: [
      dw('dw1', [3, 3, 3, 2], { activation: 'relu' }), // 10x10x6
      dw('dw2', [3, 3, 6, 1], { padding: 'valid', strides: [2, 2], bias: false }), // 4x4x6
      dw('dw3', [3, 3, 6, 1], { dilations: [2, 2], activation: 'elu' }), // 4x4x6
      { op: 'maxPool', name: 'pool1', poolSize: [2, 2], strides: [2, 2], padding: 'valid' }, // 2x2x6
      { op: 'avgPool', name: 'pool2', poolSize: [3, 3], strides: [1, 1], padding: 'same' }, // 2x2x6
      { op: 'globalAvgPool', name: 'gap' }, // 6
      { op: 'dense', name: 'fc1', kernel: constant('fc1/kernel', [6, 4], rng), bias: constant('fc1/bias', [4], rng), activation: 'relu' },
      { op: 'dense', name: 'fc2', kernel: constant('fc2/kernel', [4, 3], rng), activation: 'tanh' },
      { op: 'activation', name: 'act', activation: 'sigmoid' },
    ],
  };
}

/** Pools with SAME and VALID, a per-pixel dense, scale-and-shift (4-D and 2-D), global max pool, activation ops incl. linear. */
export function poolGraph(): ExportGraph {
  const rng = createRng(3, 'tf-graphs:pool');
  return {
    input: { name: 'x', shape: [null, 7, 7, 2], dtype: 'float32' },
    output: { name: 'y', shape: [null, 3], dtype: 'float32' },
    ops: [
      { op: 'maxPool', name: 'max', poolSize: [3, 3], strides: [2, 2], padding: 'same' }, // 4x4x2
      { op: 'avgPool', name: 'avg', poolSize: [2, 2], strides: [1, 1], padding: 'valid' }, // 3x3x2
      { op: 'dense', name: 'pointwise', kernel: constant('pointwise/kernel', [2, 3], rng), bias: constant('pointwise/bias', [3], rng), activation: 'elu' }, // 3x3x3
      { op: 'scaleShift', name: 'bn', scale: constant('bn/scale', [3], rng, 2), shift: constant('bn/shift', [3], rng), activation: 'relu6' },
      { op: 'globalMaxPool', name: 'gmp' }, // 3
      { op: 'scaleShift', name: 'bn2', scale: constant('bn2/scale', [3], rng, 2), shift: constant('bn2/shift', [3], rng), activation: 'linear' },
      { op: 'activation', name: 'identity', activation: 'linear' },
      { op: 'activation', name: 'softmax', activation: 'softmax' },
    ],
  };
}

/** A conv with a uint8 kernel and float16 bias, a dense with a float16 kernel and a uint16 bias. */
export function quantizedGraph(): ExportGraph {
  const rng = createRng(4, 'tf-graphs:quantized');
  return {
    input: { name: 'input', shape: [null, 6, 6, 2], dtype: 'float32' },
    output: { name: 'output', shape: [null, 3], dtype: 'float32' },
    ops: [
      {
        op: 'conv2d',
        name: 'conv',
        kernel: quantized('conv/kernel', [3, 3, 2, 4], rng, 'uint8'),
        bias: quantized('conv/bias', [4], rng, 'float16'),
        strides: [1, 1],
        dilations: [1, 1],
        padding: 'same',
        activation: 'relu',
      },
      { op: 'reshape', name: 'flatten', shape: [144] },
      { op: 'dense', name: 'dense', kernel: quantized('dense/kernel', [144, 3], rng, 'float16'), bias: quantized('dense/bias', [3], rng, 'uint16'), activation: 'linear' },
    ],
  };
}

/**
 * Ops named like the graph's input and output and like the nodes other ops make, and a constant
 * named like a node the writer would make: the writer must keep the signature's and constants'
 * names and rename its own nodes around them.
 */
export function namesGraph(): ExportGraph {
  const rng = createRng(5, 'tf-graphs:names');
  return {
    input: { name: 'x', shape: [null, 4, 4, 2], dtype: 'float32' },
    output: { name: 'y', shape: [null, 3], dtype: 'float32' },
    ops: [
      { op: 'activation', name: 'x', activation: 'relu' },
      { op: 'reshape', name: 'flatten', shape: [32] },
      { op: 'dense', name: 'y', kernel: constant('flatten/shape', [32, 3], rng), bias: constant('y/bias', [3], rng), activation: 'sigmoid' },
      { op: 'activation', name: 'y/Sigmoid', activation: 'tanh' },
    ],
  };
}

export const ALL_GRAPHS: Record<string, () => ExportGraph> = {
  conv: convGraph,
  depthwise: depthwiseGraph,
  pools: poolGraph,
  quantized: quantizedGraph,
  names: namesGraph,
};
