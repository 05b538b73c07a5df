import * as tf from '@tensorflow/tfjs';
import { runStockKernel, type BackendWasm } from './kernel-utils.js';

// The batch-norm gradient tiles per-channel vectors up to the activation's shape (tfjs-core's
// FusedBatchNorm grad), and the stock wasm Tile spends ~100 ns per output value on index
// arithmetic: it was the largest kernel of a training step of the big model. A tiled tensor is
// blocks repeated along each axis, so here it is built from the innermost axis outwards with
// native copies, each block doubling (copyWithin) until its axis is filled.

function bytesPer(dtype: tf.DataType): number {
  return dtype === 'bool' ? 1 : 4;
}

function tile(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as { x: tf.TensorInfo };
  const { reps } = args.attrs as unknown as tf.TileAttrs;
  if (x.dtype === 'string' || x.dtype === 'complex64' || reps.length !== x.shape.length) {
    return runStockKernel(backend, tf.Tile, args.inputs, args.attrs ?? {});
  }
  const rank = x.shape.length;
  const outShape = x.shape.map((d, i) => d * reps[i]);
  const out = backend.makeOutput(outShape, x.dtype);
  const size = tf.util.sizeFromShape(outShape);
  if (size === 0) return out;
  // One byte view of the whole heap, so copies between the two tensors stay native.
  const heap = new Uint8Array(backend.wasm.HEAPU8.buffer);
  const unit = bytesPer(x.dtype);
  const src = backend.dataIdMap.get(x.dataId)?.memoryOffset;
  const dst = backend.dataIdMap.get(out.dataId)?.memoryOffset;
  if (src == null || dst == null) throw new Error('Tile: tensor not on the wasm heap');
  const inStrides = new Array<number>(rank);
  const outStrides = new Array<number>(rank);
  inStrides[rank - 1] = unit;
  outStrides[rank - 1] = unit;
  for (let i = rank - 2; i >= 0; i--) {
    inStrides[i] = inStrides[i + 1] * x.shape[i + 1];
    outStrides[i] = outStrides[i + 1] * outShape[i + 1];
  }

  /** Fills out's block at `to` for axes >= axis from x's block at `from`. */
  const fill = (axis: number, from: number, to: number): void => {
    const block = axis === rank - 1 ? unit : outStrides[axis];
    const span = x.shape[axis] * block; // one copy of x along this axis
    if (axis === rank - 1) {
      heap.copyWithin(to, from, from + span);
    } else {
      for (let j = 0; j < x.shape[axis]; j++) fill(axis + 1, from + j * inStrides[axis], to + j * outStrides[axis]);
    }
    let filled = span;
    const total = span * reps[axis];
    while (filled < total) {
      const n = Math.min(filled, total - filled);
      heap.copyWithin(to + filled, to, to + n);
      filled += n;
    }
  };
  if (rank === 0) {
    heap.copyWithin(dst, src, src + unit);
  } else {
    fill(0, src, dst);
  }
  return out;
}

export const tileConfig: tf.KernelConfig = {
  kernelName: tf.Tile,
  backendName: 'wasm',
  kernelFunc: tile as unknown as tf.KernelFunc,
};
