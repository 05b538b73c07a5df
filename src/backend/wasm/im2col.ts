import * as tf from '@tensorflow/tfjs';
import { heapF32, type BackendWasm } from './kernel-utils.js';

// Patch matrices for expressing conv gradients as one XNNPACK GEMM. The loops run in JS
// over the wasm heap; they touch each patch element once, which is cheap next to the GEMM
// (KH*KW*CI*CO multiply-adds per output pixel against KH*KW*CI copies).

/** What the loops need from a Conv2DInfo, for a slab of `batch` images. */
export interface PatchGeometry {
  batch: number;
  inHeight: number;
  inWidth: number;
  inChannels: number;
  outHeight: number;
  outWidth: number;
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  padTop: number;
  padLeft: number;
}

export function patchGeometry(info: tf.backend_util.Conv2DInfo, batch = info.batchSize): PatchGeometry {
  return {
    batch,
    inHeight: info.inHeight,
    inWidth: info.inWidth,
    inChannels: info.inChannels,
    outHeight: info.outHeight,
    outWidth: info.outWidth,
    filterHeight: info.filterHeight,
    filterWidth: info.filterWidth,
    strideHeight: info.strideHeight,
    strideWidth: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/**
 * Transposed patch matrix [KH*KW*CI, B*OH*OW] from x given channels-first as [CI, B, H, W]
 * (xT, starting at image `batchStart`). Row (kh, kw, ci) is the plane of x that filter tap
 * (kh, kw) sees in channel ci, so writes are sequential and reads run along image rows.
 */
export function im2colTransposed(
  backend: BackendWasm,
  xT: tf.TensorInfo,
  totalBatch: number,
  batchStart: number,
  g: PatchGeometry,
): tf.TensorInfo {
  const pixels = g.batch * g.outHeight * g.outWidth;
  const rows = g.filterHeight * g.filterWidth * g.inChannels;
  const out = backend.makeOutput([rows, pixels], 'float32');
  const dst = heapF32(backend, out);
  const src = heapF32(backend, xT);
  const { inHeight: H, inWidth: W, outHeight: OH, outWidth: OW, strideHeight: sh, strideWidth: sw } = g;
  let d = 0;
  for (let kh = 0; kh < g.filterHeight; kh++) {
    for (let kw = 0; kw < g.filterWidth; kw++) {
      // Output columns whose input column is inside the image, for this kw.
      const owFirst = Math.max(0, Math.ceil((g.padLeft - kw) / sw));
      const owEnd = Math.min(OW, Math.floor((W - 1 + g.padLeft - kw) / sw) + 1);
      for (let ci = 0; ci < g.inChannels; ci++) {
        for (let b = 0; b < g.batch; b++) {
          const plane = (ci * totalBatch + batchStart + b) * H;
          for (let oh = 0; oh < OH; oh++) {
            const ih = oh * sh + kh - g.padTop;
            if (ih < 0 || ih >= H || owFirst >= owEnd) {
              dst.fill(0, d, d + OW);
              d += OW;
              continue;
            }
            const rowBase = (plane + ih) * W + kw - g.padLeft;
            let ow = 0;
            for (; ow < owFirst; ow++) dst[d++] = 0;
            if (sw === 1) {
              for (let s = rowBase + ow; ow < owEnd; ow++) dst[d++] = src[s++];
            } else {
              for (; ow < owEnd; ow++) dst[d++] = src[rowBase + ow * sw];
            }
            for (; ow < OW; ow++) dst[d++] = 0;
          }
        }
      }
    }
  }
  return out;
}

/**
 * Patch matrix [B*OH*OW, KH*KW*CI] (a row per output pixel, columns in filter order) from NHWC
 * x, starting at image `batchStart`. Each tap copies CI contiguous values.
 */
export function im2col(backend: BackendWasm, x: tf.TensorInfo, batchStart: number, g: PatchGeometry): tf.TensorInfo {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = g;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = g;
  const out = backend.makeOutput([g.batch * OH * OW, KH * KW * C], 'float32');
  const dst = heapF32(backend, out);
  const src = heapF32(backend, x);
  let d = 0;
  for (let b = 0; b < g.batch; b++) {
    const image = (batchStart + b) * H;
    for (let oh = 0; oh < OH; oh++) {
      const ihBase = oh * sh - g.padTop;
      for (let ow = 0; ow < OW; ow++) {
        const iwBase = ow * sw - g.padLeft;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ihBase + kh;
          const inRow = ih >= 0 && ih < H;
          for (let kw = 0; kw < KW; kw++) {
            const iw = iwBase + kw;
            if (inRow && iw >= 0 && iw < W) {
              const s = ((image + ih) * W + iw) * C;
              for (let c = 0; c < C; c++) dst[d + c] = src[s + c];
            } else {
              for (let c = 0; c < C; c++) dst[d + c] = 0;
            }
            d += C;
          }
        }
      }
    }
  }
  return out;
}

/**
 * Adds patch gradients cols [B*OH*OW, KH*KW*CI] (row per output pixel, columns in filter
 * order) back into dx [B, H, W, CI] starting at image `batchStart`: the adjoint of im2col.
 */
export function col2imAdd(
  backend: BackendWasm,
  cols: tf.TensorInfo,
  dx: tf.TensorInfo,
  batchStart: number,
  g: PatchGeometry,
): void {
  const src = heapF32(backend, cols);
  const dst = heapF32(backend, dx);
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = g;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = g;
  const rowLength = KH * KW * C;
  let s = 0;
  for (let b = 0; b < g.batch; b++) {
    const image = (batchStart + b) * H;
    for (let oh = 0; oh < OH; oh++) {
      for (let ow = 0; ow < OW; ow++) {
        const ihBase = oh * sh - g.padTop;
        const iwBase = ow * sw - g.padLeft;
        for (let kh = 0; kh < KH; kh++) {
          const ih = ihBase + kh;
          if (ih < 0 || ih >= H) continue;
          for (let kw = 0; kw < KW; kw++) {
            const iw = iwBase + kw;
            if (iw < 0 || iw >= W) continue;
            const o = ((image + ih) * W + iw) * C;
            const t = s + (kh * KW + kw) * C;
            for (let c = 0; c < C; c++) dst[o + c] += src[t + c];
          }
        }
        s += rowLength;
      }
    }
  }
}

/**
 * Images per slab so that a patch matrix for one slab stays under `maxElements` floats
 * (a 512-image batch of the big model would need ~230 MB in one piece). Splitting costs
 * speed, each slab being its own XNNPACK operator, so slabs are as large as memory allows.
 */
export const patchOptions = { maxElements: 1 << 24 };

export function slabSize(info: tf.backend_util.Conv2DInfo, maxElements = patchOptions.maxElements): number {
  const perImage = info.outHeight * info.outWidth * info.filterHeight * info.filterWidth * info.inChannels;
  return Math.max(1, Math.min(info.batchSize, Math.floor(maxElements / Math.max(1, perImage))));
}
