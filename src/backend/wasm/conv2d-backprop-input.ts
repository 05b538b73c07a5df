import * as tf from '@tensorflow/tfjs';
import { col2imAdd, patchGeometry, slabSize } from './im2col.js';
import {
  assertNHWC,
  heapF32,
  release,
  reshape,
  runKernel,
  runStockKernel,
  transpose,
  xnnConv2d,
  type BackendWasm,
} from './kernel-utils.js';

// The stock wasm Conv2DBackpropInput is a scalar C++ loop (correct, but the slowest kernel of
// a training step). Two faster ways through XNNPACK:
// - 'col2im': patch gradients dy * W^T [B*OH*OW, KH*KW*CI] by XNNPACK's GEMM, then added back
//   into dx in JS;
// - 'conv': a full correlation of dy with the filter turned by 180 degrees and its channel axes
//   swapped, by XNNPACK's convolution (dy spread out with zeros first when stride > 1). It
//   also multiplies the zero border, and for stride 2 the zeros between pixels.

export type InputGradMethod = 'auto' | 'col2im' | 'conv';

/** Benchmarks set this to compare the two methods; 'auto' picks per shape. */
export const inputGradOptions: { method: InputGradMethod } = { method: 'auto' };

function conv2DBackpropInput(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  assertNHWC(tf.Conv2DBackpropInput, attrs.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  const method = inputGradOptions.method === 'auto' ? chooseMethod(info) : inputGradOptions.method;
  if (method === 'col2im') return inputGradByCol2im(backend, dy, filter, info);
  return inputGradByConv(backend, dy, filter, info) ?? runStockKernel(backend, tf.Conv2DBackpropInput, args.inputs, args.attrs ?? {});
}

function chooseMethod(info: tf.backend_util.Conv2DInfo): 'col2im' | 'conv' {
  // The convolution multiplies the zero border too (H*W output pixels of full work for OH*OW
  // useful ones) and, for stride > 1, the zeros spread between pixels; with few input
  // channels its output is too narrow for XNNPACK's tiles. Measured on the benchmark models,
  // it wins otherwise.
  const border = (info.inHeight * info.inWidth) / (info.outHeight * info.outWidth);
  const strided = info.strideHeight > 1 || info.strideWidth > 1;
  return !strided && info.inChannels >= 8 && border < 2 ? 'conv' : 'col2im';
}

export function inputGradByCol2im(
  backend: BackendWasm,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const { batchSize, outHeight, outWidth, outChannels, filterHeight, filterWidth, inChannels } = info;
  const patch = filterHeight * filterWidth * inChannels;
  const flat = reshape(backend, filter, [patch, outChannels]);
  const filterT = transpose(backend, flat, [1, 0]);
  release(backend, flat);

  const dx = backend.makeOutput([...info.inShape], 'float32');
  heapF32(backend, dx).fill(0);
  const slab = slabSize(info);
  for (let start = 0; start < batchSize; start += slab) {
    const n = Math.min(slab, batchSize - start);
    const dySlab =
      n === batchSize
        ? null
        : runKernel(backend, tf.Slice, { x: dy }, { begin: [start, 0, 0, 0], size: [n, outHeight, outWidth, outChannels] });
    const dy2 = reshape(backend, dySlab ?? dy, [n * outHeight * outWidth, outChannels]);
    const cols = runKernel(backend, tf.BatchMatMul, { a: dy2, b: filterT }, { transposeA: false, transposeB: false });
    col2imAdd(backend, cols, dx, start, patchGeometry(info, n));
    release(backend, cols, dy2, dySlab);
  }
  release(backend, filterT);
  return dx;
}

/** null when the padding is wider than the filter (left to the stock kernel). */
export function inputGradByConv(
  backend: BackendWasm,
  dy: tf.TensorInfo,
  filter: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo | null {
  const { batchSize, inHeight, inWidth, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const spreadHeight = (outHeight - 1) * strideHeight + 1;
  const spreadWidth = (outWidth - 1) * strideWidth + 1;
  const pads = {
    top: filterHeight - 1 - info.padInfo.top,
    left: filterWidth - 1 - info.padInfo.left,
    bottom: inHeight + info.padInfo.top - spreadHeight,
    right: inWidth + info.padInfo.left - spreadWidth,
  };
  if (pads.top < 0 || pads.left < 0 || pads.bottom < 0 || pads.right < 0) return null;

  const flipped = runKernel(backend, tf.Reverse, { x: filter }, { dims: [0, 1] });
  const rotated = transpose(backend, flipped, [0, 1, 3, 2]);
  release(backend, flipped);
  let source = dy;
  if (strideHeight > 1 || strideWidth > 1) {
    source = spread(backend, dy, batchSize, outHeight, outWidth, outChannels, strideHeight, strideWidth);
  }
  const dx = xnnConv2d(backend, source, rotated, pads);
  release(backend, rotated);
  if (source !== dy) release(backend, source);
  return dx;
}

/** dy with (stride - 1) zero pixels between neighbours, as a transposed convolution sees it. */
function spread(
  backend: BackendWasm,
  dy: tf.TensorInfo,
  batch: number,
  height: number,
  width: number,
  channels: number,
  strideHeight: number,
  strideWidth: number,
): tf.TensorInfo {
  const outHeight = (height - 1) * strideHeight + 1;
  const outWidth = (width - 1) * strideWidth + 1;
  const out = backend.makeOutput([batch, outHeight, outWidth, channels], 'float32');
  const dst = heapF32(backend, out);
  const src = heapF32(backend, dy);
  dst.fill(0);
  const dstRow = outWidth * channels;
  let s = 0;
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < height; r++) {
      let d = (b * outHeight + r * strideHeight) * dstRow;
      for (let c = 0; c < width; c++) {
        for (let k = 0; k < channels; k++) dst[d + k] = src[s + k];
        s += channels;
        d += strideWidth * channels;
      }
    }
  }
  return out;
}

export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
};
