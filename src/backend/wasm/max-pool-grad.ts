import * as tf from '@tensorflow/tfjs';
import { heapF32, type BackendWasm } from './kernel-utils.js';

// Replaces the stock wasm MaxPoolGrad, which starts its running maximum at FLT_MIN (the
// smallest positive float) instead of -infinity: a window whose values are all <= 0 sends its
// gradient nowhere. Here the first maximum of each window (NaN never wins) takes the
// gradient, as on the cpu backend. Windows that do not overlap (stride = pool size, the usual
// case) each own their pixels, so dx is zeroed natively and only the winners are written.

function maxPoolGrad(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, input } = args.inputs as { dy: tf.TensorInfo; input: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.MaxPoolGradAttrs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    attrs.filterSize,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const { batchSize, inHeight, inWidth, inChannels: channels, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { effectiveFilterHeight, effectiveFilterWidth } = info;
  const padTop = info.padInfo.top;
  const padLeft = info.padInfo.left;

  const dxInfo = backend.makeOutput(input.shape, 'float32');
  const dx = heapF32(backend, dxInfo);
  const x = heapF32(backend, input);
  const dyv = heapF32(backend, dy);
  dx.fill(0);

  const nonOverlapping =
    dilationHeight === 1 &&
    dilationWidth === 1 &&
    strideHeight >= effectiveFilterHeight &&
    strideWidth >= effectiveFilterWidth;
  if (nonOverlapping) {
    gradNonOverlapping(x, dyv, dx, info);
    return dxInfo;
  }

  const best = new Float32Array(channels);
  const bestAt = new Int32Array(channels);
  const rowStride = inWidth * channels;
  let dyOffset = 0;
  for (let b = 0; b < batchSize; b++) {
    const xBatch = b * inHeight * rowStride;
    for (let oh = 0; oh < outHeight; oh++) {
      const hStart = oh * strideHeight - padTop;
      for (let ow = 0; ow < outWidth; ow++) {
        const wStart = ow * strideWidth - padLeft;
        best.fill(Number.NEGATIVE_INFINITY);
        bestAt.fill(-1);
        for (let fh = 0; fh < effectiveFilterHeight; fh += dilationHeight) {
          const h = hStart + fh;
          if (h < 0 || h >= inHeight) continue;
          for (let fw = 0; fw < effectiveFilterWidth; fw += dilationWidth) {
            const w = wStart + fw;
            if (w < 0 || w >= inWidth) continue;
            const base = xBatch + h * rowStride + w * channels;
            for (let c = 0; c < channels; c++) {
              const v = x[base + c];
              if (v > best[c]) {
                best[c] = v;
                bestAt[c] = base + c;
              }
            }
          }
        }
        for (let c = 0; c < channels; c++) {
          const at = bestAt[c];
          if (at >= 0) dx[at] += dyv[dyOffset + c];
        }
        dyOffset += channels;
      }
    }
  }
  return dxInfo;
}

function gradNonOverlapping(x: Float32Array, dy: Float32Array, dx: Float32Array, info: tf.backend_util.Conv2DInfo): void {
  const { batchSize, inHeight, inWidth, inChannels: C, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const rowStride = inWidth * C;
  let d = 0;
  for (let b = 0; b < batchSize; b++) {
    const image = b * inHeight * rowStride;
    for (let oh = 0; oh < outHeight; oh++) {
      const hStart = oh * strideHeight - info.padInfo.top;
      const h0 = Math.max(0, hStart);
      const h1 = Math.min(inHeight, hStart + fh);
      for (let ow = 0; ow < outWidth; ow++, d += C) {
        const wStart = ow * strideWidth - info.padInfo.left;
        const w0 = Math.max(0, wStart);
        const w1 = Math.min(inWidth, wStart + fw);
        const corner = image + h0 * rowStride + w0 * C;
        if (h1 - h0 === 2 && w1 - w0 === 2) {
          const p01 = corner + C;
          const p10 = corner + rowStride;
          const p11 = p10 + C;
          for (let c = 0; c < C; c++) {
            let best = Number.NEGATIVE_INFINITY;
            let at = -1;
            let v = x[corner + c];
            if (v > best) {
              best = v;
              at = corner + c;
            }
            v = x[p01 + c];
            if (v > best) {
              best = v;
              at = p01 + c;
            }
            v = x[p10 + c];
            if (v > best) {
              best = v;
              at = p10 + c;
            }
            v = x[p11 + c];
            if (v > best) at = p11 + c;
            if (at >= 0) dx[at] = dy[d + c];
          }
          continue;
        }
        for (let c = 0; c < C; c++) {
          let best = Number.NEGATIVE_INFINITY;
          let at = -1;
          for (let h = h0; h < h1; h++) {
            for (let w = w0; w < w1; w++) {
              const p = image + h * rowStride + w * C + c;
              if (x[p] > best) {
                best = x[p];
                at = p;
              }
            }
          }
          if (at >= 0) dx[at] = dy[d + c];
        }
      }
    }
  }
}

export const maxPoolGradConfig: tf.KernelConfig = {
  kernelName: tf.MaxPoolGrad,
  backendName: 'wasm',
  kernelFunc: maxPoolGrad as unknown as tf.KernelFunc,
};
