import * as tf from '@tensorflow/tfjs';
import { heapF32, type BackendWasm } from '../wasm/kernel-utils.js';
import { float, floatValue, int, ints, kernelSession, type GraphBuilder, type KernelGraph } from './sessions.js';

// The convolutions and matrix products of a training step, in NHWC as tfjs keeps them, as
// onnxruntime graphs:
// - Conv2D: im2col by KH*KW strided Slices concatenated on the channel axis (the patch
//   matrix's column order is then (kh, kw, ci), the order of a reshaped HWIO filter), one MatMul;
// - Conv2DBackpropFilter: the same patch matrix, transposed into one Gemm with dy;
// - Conv2DBackpropInput: ConvTranspose between layout transposes (it handles strides and
//   asymmetric padding, which a col2im by Pad and Sum cannot do for strides > 1);
// - BatchMatMul, _FusedMatMul: one Gemm, whose transA/transB cost no copy.
// Cases outside these (dilations, batched or small products, PReLU) go to the kernel that was
// registered before (ours from src/backend/wasm/, or stock).

export const onnxruntimeKernelOptions = {
  /**
   * Below this many multiply-adds the fixed cost of a session run (~20-40 us) outweighs MLAS and
   * the previous kernel runs (tests set 0 to send every case through onnxruntime).
   */
  minMacs: 1 << 17,
  /** Forward convolutions with fewer input channels stay on XNNPACK (see conv2d). */
  minForwardChannels: 4,
  /**
   * Above this many elements no patch matrix is built: forward convolutions go through
   * onnxruntime's NCHW Conv, filter gradients take one Gemm per filter tap.
   */
  maxPatchElements: 8_000_000,
  /** How a forward convolution is formed (tests and benchmarks pin one; see chooseForwardMethod). */
  forwardMethod: 'auto' as 'auto' | 'im2col' | 'nchw',
  /** How the input gradient is formed (tests and benchmarks pin one; see chooseInputGradMethod). */
  inputGradMethod: 'auto' as 'auto' | 'col2im' | 'convTranspose',
};

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

/** The wasm kernels these replace: the fallback, and what unregistering puts back. */
export const previousKernels = new Map<string, tf.KernelConfig>();

function fallback(kernelName: string, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const config = previousKernels.get(kernelName);
  if (!config) throw new Error(`internal: no wasm ${kernelName} kernel to fall back to`);
  return config.kernelFunc(args as Parameters<tf.KernelFunc>[0]);
}

/** Runs a session whose output the wasm backend allocates (views taken after the allocation). */
function runInto(
  backend: BackendWasm,
  key: string,
  graph: () => KernelGraph,
  inputs: { info: tf.TensorInfo; dims?: number[] }[],
  outShape: number[],
  outDims = outShape,
): tf.TensorInfo {
  const session = kernelSession(key, graph);
  const out = backend.makeOutput(outShape, 'float32');
  session.run(
    inputs.map(({ info, dims }) => ({ data: heapF32(backend, info), dims: dims ?? info.shape })),
    { data: heapF32(backend, out), dims: outDims },
  );
  return out;
}

// ---- activations (fused kernels) ----

const ACTIVATIONS = new Set(['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'leakyrelu']);

function activate(g: GraphBuilder, input: string, activation: string, alpha: number | undefined, output: string): void {
  switch (activation) {
    case 'linear':
      g.op('Identity', [input], [], output);
      return;
    case 'relu':
      g.op('Relu', [input], [], output);
      return;
    case 'relu6': {
      g.op('Clip', [input, g.float32(0), g.float32(6)], [], output);
      return;
    }
    case 'elu':
      g.op('Elu', [input], [float('alpha', 1)], output);
      return;
    case 'sigmoid':
      g.op('Sigmoid', [input], [], output);
      return;
    case 'leakyrelu':
      g.op('LeakyRelu', [input], [float('alpha', alpha ?? 0.2)], output);
      return;
    default:
      throw new Error(`internal: activation ${activation}`);
  }
}

// ---- convolutions ----

type ConvInfo = tf.backend_util.Conv2DInfo;

function convInfo(xShape: number[], filterShape: number[], attrs: tf.NamedAttrMap): ConvInfo {
  const a = attrs as unknown as tf.Conv2DAttrs;
  return tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    a.strides,
    a.dilations ?? 1,
    a.pad,
    a.dimRoundingMode,
    false,
    'channelsLast',
  );
}

function convSupported(info: ConvInfo, attrs: tf.NamedAttrMap): boolean {
  const format = attrs.dataFormat;
  const nhwc = format == null || format === 'NHWC' || format === 'channelsLast';
  return nhwc && info.dilationHeight === 1 && info.dilationWidth === 1 && macs(info) >= onnxruntimeKernelOptions.minMacs;
}

const patchElements = (info: ConvInfo): number =>
  info.batchSize * info.outHeight * info.outWidth * info.filterHeight * info.filterWidth * info.inChannels;

/** Multiply-adds of the convolution: one per patch-matrix element and output channel. */
const macs = (info: ConvInfo): number => patchElements(info) * info.outChannels;

function convKey(info: ConvInfo): string {
  const p = info.padInfo;
  return (
    `${info.inHeight}x${info.inWidth}x${info.inChannels}:k${info.filterHeight}x${info.filterWidth}x${info.outChannels}` +
    `:s${info.strideHeight},${info.strideWidth}:p${p.top},${p.bottom},${p.left},${p.right}`
  );
}

/** For each filter tap (kh, kw), the input pixels it meets: [B, OH, OW, CI] each. */
function tapSlices(g: GraphBuilder, x: string, info: ConvInfo): string[] {
  const { top, bottom, left, right } = info.padInfo;
  const padded = top || bottom || left || right ? g.op('Pad', [x, g.int64s([0, top, left, 0, 0, bottom, right, 0])]) : x;
  const slices: string[] = [];
  const spanH = (info.outHeight - 1) * info.strideHeight + 1;
  const spanW = (info.outWidth - 1) * info.strideWidth + 1;
  for (let kh = 0; kh < info.filterHeight; kh++) {
    for (let kw = 0; kw < info.filterWidth; kw++) {
      slices.push(
        g.op('Slice', [
          padded,
          g.int64s([kh, kw]),
          g.int64s([kh + spanH, kw + spanW]),
          g.int64s([1, 2]),
          g.int64s([info.strideHeight, info.strideWidth]),
        ]),
      );
    }
  }
  return slices;
}

/** The patch matrix [B*OH*OW, KH*KW*CI] of an NHWC input named `x`. */
function im2col(g: GraphBuilder, x: string, info: ConvInfo): string {
  const slices = tapSlices(g, x, info);
  const patches = slices.length === 1 ? slices[0] : g.op('Concat', slices, [int('axis', 3)]);
  return g.reshape(patches, [-1, info.filterHeight * info.filterWidth * info.inChannels]);
}


function conv2dGraph(info: ConvInfo, method: 'im2col' | 'nchw', bias: boolean, activation: string, alpha?: number): KernelGraph {
  const patch = info.filterHeight * info.filterWidth * info.inChannels;
  return {
    inputs: [
      floatValue('x', ['batch', info.inHeight, info.inWidth, info.inChannels]),
      floatValue('filter', [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels]),
      ...(bias ? [floatValue('bias', [info.outChannels])] : []),
    ],
    output: floatValue('y', ['batch', info.outHeight, info.outWidth, info.outChannels]),
    build(g) {
      let y: string;
      if (method === 'nchw') {
        const { top, bottom, left, right } = info.padInfo;
        const conv = g.op(
          'Conv',
          [g.transpose('x', [0, 3, 1, 2]), g.transpose('filter', [3, 2, 0, 1]), ...(bias ? ['bias'] : [])],
          [
            ints('kernel_shape', [info.filterHeight, info.filterWidth]),
            ints('strides', [info.strideHeight, info.strideWidth]),
            ints('pads', [top, left, bottom, right]),
          ],
        );
        y = g.transpose(conv, [0, 2, 3, 1]);
      } else {
        const cols = im2col(g, 'x', info);
        const w = g.reshape('filter', [patch, info.outChannels]);
        const product = bias ? g.op('Gemm', [cols, w, 'bias']) : g.op('MatMul', [cols, w]);
        y = g.reshape(product, [-1, info.outHeight, info.outWidth, info.outChannels]);
      }
      activate(g, y, activation, alpha, 'y');
    },
  };
}

function chooseForwardMethod(info: ConvInfo): 'im2col' | 'nchw' {
  const method = onnxruntimeKernelOptions.forwardMethod;
  if (method !== 'auto') return method;
  // A large patch matrix costs more memory traffic than MLAS's own image-by-image im2col plus two
  // layout transposes (measured: 28x28x32 -> 32 'same' at batch 128, 46 against 74 ms).
  return patchElements(info) > onnxruntimeKernelOptions.maxPatchElements ? 'nchw' : 'im2col';
}

function conv2d(args: KernelArgs, kernelName: string): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
  const attrs = args.attrs ?? {};
  const activation = String(attrs.activation ?? 'linear');
  const info = convInfo(x!.shape, filter!.shape, attrs);
  const biasOk = bias == null || (bias.shape.length === 1 && bias.shape[0] === info.outChannels);
  // With one to three input channels the patch matrix is mostly copying (K = 9 to 27) and
  // XNNPACK's direct convolution wins (measured: 6.5 against 11-16 ms for 128x28x28x1 -> 32).
  if (info.inChannels < onnxruntimeKernelOptions.minForwardChannels || !convSupported(info, attrs) || !ACTIVATIONS.has(activation) || preluActivationWeights != null || !biasOk) {
    return fallback(kernelName, args);
  }
  const alpha = attrs.leakyreluAlpha as number | undefined;
  const method = chooseForwardMethod(info);
  const key = `conv2d:${method}:${convKey(info)}:${bias ? 'bias' : ''}:${activation}:${alpha ?? ''}`;
  return runInto(
    backend,
    key,
    () => conv2dGraph(info, method, bias != null, activation, alpha),
    [{ info: x! }, { info: filter! }, ...(bias ? [{ info: bias }] : [])],
    [info.batchSize, info.outHeight, info.outWidth, info.outChannels],
  );
}

function conv2dBackpropFilter(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs ?? {};
  const filterShape = (attrs as unknown as tf.Conv2DBackpropFilterAttrs).filterShape;
  const info = convInfo(x.shape, filterShape, { ...attrs, dilations: 1 });
  if (!convSupported(info, attrs)) return fallback(tf.Conv2DBackpropFilter, args);
  // One Gemm over the patch matrix, or (large images) one per filter tap over that tap's slice,
  // which saves writing and reading the concatenated matrix.
  const perTap = patchElements(info) > onnxruntimeKernelOptions.maxPatchElements;
  return runInto(
    backend,
    `conv2dBackpropFilter:${perTap ? 'taps' : 'im2col'}:${convKey(info)}`,
    () => ({
      inputs: [
        floatValue('x', ['batch', info.inHeight, info.inWidth, info.inChannels]),
        floatValue('dy', ['batch', info.outHeight, info.outWidth, info.outChannels]),
      ],
      output: floatValue('dw', filterShape),
      build(g) {
        const grads = g.reshape('dy', [-1, info.outChannels]);
        const transA = [int('transA', 1)];
        const dw = perTap
          ? g.op('Concat', tapSlices(g, 'x', info).map((tap) => g.op('Gemm', [g.reshape(tap, [-1, info.inChannels]), grads], transA)), [int('axis', 0)])
          : g.op('Gemm', [im2col(g, 'x', info), grads], transA);
        g.op('Reshape', [dw, g.int64s(filterShape)], [], 'dw');
      },
    }),
    [{ info: x }, { info: dy }],
    filterShape,
  );
}

function conv2dBackpropInput(args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs ?? {};
  const inputShape = (attrs as unknown as tf.Conv2DBackpropInputAttrs).inputShape;
  const info = convInfo(inputShape, filter.shape, { ...attrs, dilations: 1 });
  if (!convSupported(info, attrs)) return fallback(tf.Conv2DBackpropInput, args);
  const method = chooseInputGradMethod(info);
  return runInto(
    backend,
    `conv2dBackpropInput:${method}:${convKey(info)}`,
    () => ({
      inputs: [
        floatValue('dy', ['batch', info.outHeight, info.outWidth, info.outChannels]),
        floatValue('filter', [info.filterHeight, info.filterWidth, info.inChannels, info.outChannels]),
      ],
      output: floatValue('dx', ['batch', info.inHeight, info.inWidth, info.inChannels]),
      build: (g) => (method === 'col2im' ? inputGradByCol2im(g, info) : inputGradByConvTranspose(g, info)),
    }),
    [{ info: dy }, { info: filter }],
    inputShape,
  );
}

function chooseInputGradMethod(info: ConvInfo): 'col2im' | 'convTranspose' {
  const method = onnxruntimeKernelOptions.inputGradMethod;
  if (method !== 'auto') return method === 'col2im' && stride1(info) ? 'col2im' : 'convTranspose';
  // ConvTranspose scatters image by image, slow for small images (4x for 5x5x64 at batch 128);
  // the col2im by Pad and Sum exists for stride 1 only.
  return stride1(info) && info.inHeight * info.inWidth <= 100 ? 'col2im' : 'convTranspose';
}

const stride1 = (info: ConvInfo): boolean => info.strideHeight === 1 && info.strideWidth === 1;

/** ConvTranspose between layout transposes: any stride and padding. */
function inputGradByConvTranspose(g: GraphBuilder, info: ConvInfo): void {
  const { top, bottom, left, right } = info.padInfo;
  // ConvTranspose's output is stride*(in-1) + extra + K - pads; `extra` restores the rows a
  // strided forward convolution skipped at the end.
  const extraH = info.inHeight + top + bottom - info.filterHeight - info.strideHeight * (info.outHeight - 1);
  const extraW = info.inWidth + left + right - info.filterWidth - info.strideWidth * (info.outWidth - 1);
  const dyNchw = g.transpose('dy', [0, 3, 1, 2]);
  const w = g.transpose('filter', [3, 2, 0, 1]);
  const dx = g.op('ConvTranspose', [dyNchw, w], [
    ints('kernel_shape', [info.filterHeight, info.filterWidth]),
    ints('strides', [info.strideHeight, info.strideWidth]),
    ints('pads', [top, left, bottom, right]),
    ints('output_padding', [extraH, extraW]),
  ]);
  g.op('Transpose', [dx], [ints('perm', [0, 2, 3, 1])], 'dx');
}

/**
 * Stride 1: the patch-matrix gradient dy * W^T in one Gemm, then each filter tap's slice of it
 * shifted into place by Pad and summed (col2im), and the input's padding cut off.
 */
function inputGradByCol2im(g: GraphBuilder, info: ConvInfo): void {
  const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
  const { top, left } = info.padInfo;
  const grads = g.reshape('dy', [-1, co]);
  const w = g.reshape('filter', [kh * kw * ci, co]);
  const cols = g.reshape(g.op('Gemm', [grads, w], [int('transB', 1)]), [-1, info.outHeight, info.outWidth, kh * kw * ci]);
  const shifted: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const tap = (i * kw + j) * ci;
      const slice = g.op('Slice', [cols, g.int64s([tap]), g.int64s([tap + ci]), g.int64s([3])]);
      shifted.push(g.op('Pad', [slice, g.int64s([0, i, j, 0, 0, kh - 1 - i, kw - 1 - j, 0])]));
    }
  }
  const padded = shifted.length === 1 ? shifted[0] : g.op('Sum', shifted);
  g.op(
    'Slice',
    [padded, g.int64s([top, left]), g.int64s([top + info.inHeight, left + info.inWidth]), g.int64s([1, 2])],
    [],
    'dx',
  );
}

// ---- matrix products ----

function matMul(args: KernelArgs, kernelName: string): tf.TensorInfo | tf.TensorInfo[] {
  const backend = args.backend as BackendWasm;
  const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
  const attrs = args.attrs ?? {};
  const transA = attrs.transposeA === true;
  const transB = attrs.transposeB === true;
  const activation = String(attrs.activation ?? 'linear');
  const [aRows, aCols] = a!.shape.slice(-2);
  const [bRows, bCols] = b!.shape.slice(-2);
  const m = transA ? aCols : aRows;
  const k = transA ? aRows : aCols;
  const n = transB ? bRows : bCols;
  const biasOk = bias == null || (bias.shape.length === 1 && bias.shape[0] === n);
  if (
    tf.util.sizeFromShape(a!.shape.slice(0, -2)) !== 1 ||
    tf.util.sizeFromShape(b!.shape.slice(0, -2)) !== 1 ||
    a!.dtype !== 'float32' ||
    b!.dtype !== 'float32' ||
    m * n * k < onnxruntimeKernelOptions.minMacs ||
    !ACTIVATIONS.has(activation) ||
    preluActivationWeights != null ||
    !biasOk
  ) {
    return fallback(kernelName, args);
  }
  const alpha = attrs.leakyreluAlpha as number | undefined;
  const rank = Math.max(a!.shape.length, b!.shape.length);
  const outShape = [...new Array<number>(Math.max(0, rank - 2)).fill(1), m, n];
  const key = `gemm:${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}:${bias ? 'bias' : ''}:${activation}:${alpha ?? ''}`;
  return runInto(
    backend,
    key,
    () => ({
      inputs: [floatValue('a', ['ar', 'ac']), floatValue('b', ['br', 'bc']), ...(bias ? [floatValue('bias', ['n'])] : [])],
      output: floatValue('c', ['m', 'n']),
      build(g) {
        const c = g.op('Gemm', ['a', 'b', ...(bias ? ['bias'] : [])], [int('transA', transA ? 1 : 0), int('transB', transB ? 1 : 0)]);
        activate(g, c, activation, alpha, 'c');
      },
    }),
    [{ info: a!, dims: [aRows, aCols] }, { info: b!, dims: [bRows, bCols] }, ...(bias ? [{ info: bias }] : [])],
    outShape,
    [m, n],
  );
}

const config = (kernelName: string, kernelFunc: (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[]): tf.KernelConfig => ({
  kernelName,
  backendName: 'wasm',
  kernelFunc: kernelFunc as unknown as tf.KernelFunc,
});

export const onnxruntimeKernelConfigs: tf.KernelConfig[] = [
  config(tf.Conv2D, (args) => conv2d(args, tf.Conv2D)),
  config(tf.FusedConv2D, (args) => conv2d(args, tf.FusedConv2D)),
  config(tf.Conv2DBackpropFilter, conv2dBackpropFilter),
  config(tf.Conv2DBackpropInput, conv2dBackpropInput),
  config(tf.BatchMatMul, (args) => matMul(args, tf.BatchMatMul)),
  config(tf._FusedMatMul, (args) => matMul(args, tf._FusedMatMul)),
];
