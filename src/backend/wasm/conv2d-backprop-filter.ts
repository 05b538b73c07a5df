import * as tf from '@tensorflow/tfjs';
import { im2col, im2colTransposed, patchGeometry, slabSize } from './im2col.js';
import { assertNHWC, release, reshape, runKernel, transpose, xnnConv2d, type BackendWasm } from './kernel-utils.js';

// dW[kh,kw,ci,co] = sum over b,oh,ow of x[b, oh*sh+kh-top, ow*sw+kw-left, ci] * dy[b,oh,ow,co].
// Two ways to hand that sum to XNNPACK:
// - 'im2col': a patch matrix P [B*OH*OW, KH*KW*CI] built in JS, then one GEMM (XNNPACK
//   fully-connected) between P and dy;
// - 'conv': read with ci as the batch, b as the channels and dy as an OH x OW filter dilated
//   by the stride, the sum is a stride-1 convolution conv(x^[CI,H,W,B], dy^[OH,OW,B,CO]),
//   which XNNPACK's indirect GEMM runs with no patch buffer.
// Either way one operand runs over all B*OH*OW pixels and XNNPACK repacks it as weights on
// every call (it cannot know they change each step), at several ns per value: that packing,
// not the multiply-adds, dominates for the first layer, so the smaller of P and dy is the one
// packed.

export type FilterGradMethod = 'auto' | 'im2col' | 'conv';

/** Benchmarks set this to compare the two methods; 'auto' picks per shape. */
export const filterGradOptions: { method: FilterGradMethod } = { method: 'auto' };

function conv2DBackpropFilter(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  assertNHWC(tf.Conv2DBackpropFilter, attrs.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  const method = filterGradOptions.method === 'auto' ? chooseMethod(info) : filterGradOptions.method;
  return method === 'im2col' ? filterGradByIm2col(backend, x, dy, info) : filterGradByConv(backend, x, dy, info);
}

function chooseMethod(info: tf.backend_util.Conv2DInfo): 'im2col' | 'conv' {
  // With few input channels the convolution's output (CI x KH x KW pixels) is too small to
  // keep XNNPACK busy, and the patch matrix is cheap to build; otherwise the convolution
  // saves building it (measured on the benchmark models' layers).
  return info.inChannels < 8 ? 'im2col' : 'conv';
}

/** Sum over slabs of images of partial(start, count), each of the same shape. */
function sumOverSlabs(
  backend: BackendWasm,
  batchSize: number,
  slab: number,
  partial: (start: number, count: number) => tf.TensorInfo,
): tf.TensorInfo {
  let sum: tf.TensorInfo | null = null;
  for (let start = 0; start < batchSize; start += slab) {
    const part = partial(start, Math.min(slab, batchSize - start));
    if (sum == null) {
      sum = part;
    } else {
      const next = runKernel(backend, tf.Add, { a: sum, b: part }, {});
      release(backend, sum, part);
      sum = next;
    }
  }
  if (sum == null) throw new Error('Conv2DBackpropFilter: empty batch');
  return sum;
}

function sliceBatch(backend: BackendWasm, t: tf.TensorInfo, start: number, count: number): tf.TensorInfo | null {
  if (start === 0 && count === t.shape[0]) return null;
  return runKernel(backend, tf.Slice, { x: t }, { begin: [start, 0, 0, 0], size: [count, t.shape[1], t.shape[2], t.shape[3]] });
}

export function filterGradByIm2col(
  backend: BackendWasm,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const { batchSize, outHeight, outWidth, outChannels, filterHeight, filterWidth, inChannels } = info;
  const patch = filterHeight * filterWidth * inChannels;
  // Slabs of images only bound the patch matrix's memory (a big batch needs hundreds of MB).
  const slab = slabSize(info);
  let sum: tf.TensorInfo;
  if (patch < outChannels) {
    // dW^T [CO, patch] = dy^T * P: P is the packed operand.
    sum = sumOverSlabs(backend, batchSize, slab, (start, n) => {
      const cols = im2col(backend, x, start, patchGeometry(info, n));
      const dySlab = sliceBatch(backend, dy, start, n);
      const dy2 = reshape(backend, dySlab ?? dy, [n * outHeight * outWidth, outChannels]);
      const dyT = transpose(backend, dy2, [1, 0]);
      release(backend, dy2, dySlab);
      const part = runKernel(backend, tf.BatchMatMul, { a: dyT, b: cols }, { transposeA: false, transposeB: false });
      release(backend, cols, dyT);
      return part;
    });
    const flat = reshape(backend, sum, [outChannels, patch]);
    const out = transpose(backend, flat, [1, 0]);
    release(backend, flat, sum);
    out.shape = [...info.filterShape];
    return out;
  }
  // dW [patch, CO] = P^T * dy: dy is the packed operand.
  const xT = transpose(backend, x, [3, 0, 1, 2]);
  sum = sumOverSlabs(backend, batchSize, slab, (start, n) => {
    const cols = im2colTransposed(backend, xT, batchSize, start, patchGeometry(info, n));
    const dySlab = sliceBatch(backend, dy, start, n);
    const dy2 = reshape(backend, dySlab ?? dy, [n * outHeight * outWidth, outChannels]);
    const part = runKernel(backend, tf.BatchMatMul, { a: cols, b: dy2 }, { transposeA: false, transposeB: false });
    release(backend, cols, dy2, dySlab);
    return part;
  });
  release(backend, xT);
  sum.shape = [...info.filterShape];
  return sum;
}

export function filterGradByConv(
  backend: BackendWasm,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  info: tf.backend_util.Conv2DInfo,
): tf.TensorInfo {
  const { inHeight, inWidth, outHeight, outWidth, filterHeight, filterWidth, strideHeight, strideWidth } = info;
  const { top, left } = info.padInfo;
  // The far-side padding that makes the output exactly KH x KW. When the forward pass dropped
  // trailing rows (stride > 1, sizes not aligned) it is negative: pad nothing and crop instead.
  const bottom = filterHeight - inHeight - top + (outHeight - 1) * strideHeight;
  const right = filterWidth - inWidth - left + (outWidth - 1) * strideWidth;
  const pads = { top, left, bottom: Math.max(0, bottom), right: Math.max(0, right) };

  // One convolution over the whole batch: splitting it to shorten the reduction was measured
  // slower at every split size (each XNNPACK operator repacks its weights).
  const xT = transpose(backend, x, [3, 1, 2, 0]);
  const dyT = transpose(backend, dy, [1, 2, 0, 3]);
  let grad = xnnConv2d(backend, xT, dyT, pads, [strideHeight, strideWidth]);
  release(backend, xT, dyT);
  if (grad.shape[1] !== filterHeight || grad.shape[2] !== filterWidth) {
    const cropped = runKernel(
      backend,
      tf.Slice,
      { x: grad },
      { begin: [0, 0, 0, 0], size: [info.inChannels, filterHeight, filterWidth, info.outChannels] },
    );
    release(backend, grad);
    grad = cropped;
  }
  const out = transpose(backend, grad, [1, 2, 0, 3]);
  release(backend, grad);
  return out;
}

export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: 'wasm',
  kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
};
