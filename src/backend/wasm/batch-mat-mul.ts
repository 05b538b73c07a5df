import * as tf from '@tensorflow/tfjs';
import { release, reshape, runStockKernel, transpose, type BackendWasm } from './kernel-utils.js';

// The stock wasm matmul reaches XNNPACK only for an unbatched product with neither operand
// transposed; anything else falls into a scalar triple loop many times slower. Backprop of a
// dense layer asks for exactly those transposed products (dy * W^T and x^T * dy). Here the
// operands are transposed first (native copies) and the product always takes the fast path.
//
// XNNPACK packs the right-hand operand as "weights" on every call with a new right-hand tensor
// (several ns per value, slower than the multiply-adds for a training batch), so the product
// is computed whichever way packs less: C = A * B packs B (K x N), C^T = B^T * A^T packs A^T
// (K x M) and costs three transposes. A right-hand tensor already packed by an earlier call
// (fixed weights at inference) keeps the stock orientation, whose packing XNNPACK caches.
// Batched products keep the stock path.

/** Estimated cost, in ns per value, of XNNPACK packing weights and of a transpose. */
const PACK_COST = 6;
const TRANSPOSE_COST = 1;

/** Right-hand operands that the stock kernel has packed (and cached) as weights. */
const packedRightHands = new WeakSet<object>();

/** x as a [1, rows, cols] matrix, transposed when asked (a copy then, else a shared view). */
function asMatrix(backend: BackendWasm, x: tf.TensorInfo, transposed: boolean): tf.TensorInfo {
  const rows = x.shape[x.shape.length - 2];
  const cols = x.shape[x.shape.length - 1];
  if (!transposed) return reshape(backend, x, [1, rows, cols]);
  const flat = reshape(backend, x, [rows, cols]);
  const out = transpose(backend, flat, [1, 0]);
  release(backend, flat);
  out.shape = [1, cols, rows];
  return out;
}

function makeMatMul(kernelName: string) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const attrs = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean; activation?: string };
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    if (a == null || b == null) throw new Error(`${kernelName}: missing operand`);
    const transposeA = attrs.transposeA === true;
    const transposeB = attrs.transposeB === true;
    if (tf.util.sizeFromShape(a.shape.slice(0, -2)) !== 1 || tf.util.sizeFromShape(b.shape.slice(0, -2)) !== 1 || a.dtype !== 'float32' || b.dtype !== 'float32') {
      return runStockKernel(backend, kernelName, args.inputs, args.attrs ?? {});
    }
    const aRows = a.shape[a.shape.length - 2];
    const aCols = a.shape[a.shape.length - 1];
    const bRows = b.shape[b.shape.length - 2];
    const bCols = b.shape[b.shape.length - 1];
    const m = transposeA ? aCols : aRows;
    const k = transposeA ? aRows : aCols;
    const n = transposeB ? bRows : bCols;
    const rank = Math.max(a.shape.length, b.shape.length);
    const outShape = [...new Array<number>(Math.max(0, rank - 2)).fill(1), m, n];

    const cached = !transposeB && packedRightHands.has(b.dataId);
    const stockCost = (cached ? 0 : k * n * PACK_COST) + ((transposeA ? m * k : 0) + (transposeB ? k * n : 0)) * TRANSPOSE_COST;
    const swapCost = k * m * PACK_COST + ((transposeA ? 0 : m * k) + (transposeB ? 0 : k * n) + m * n) * TRANSPOSE_COST;
    // Bias and activation apply per column of C; the swapped product cannot fuse them.
    const plain = bias == null && preluActivationWeights == null && (attrs.activation ?? 'linear') === 'linear';

    if (plain && swapCost < stockCost) {
      const bT = asMatrix(backend, b, !transposeB); // B^T [1, n, k]
      const aT = asMatrix(backend, a, !transposeA); // A^T [1, k, m]
      const cT = runStockKernel(backend, kernelName, { ...args.inputs, a: bT, b: aT }, { ...args.attrs, transposeA: false, transposeB: false });
      release(backend, bT, aT);
      const flat = reshape(backend, cT, [n, m]);
      release(backend, cT);
      const c = transpose(backend, flat, [1, 0]);
      release(backend, flat);
      c.shape = outShape;
      return c;
    }
    if (!transposeA && !transposeB) {
      packedRightHands.add(b.dataId);
      return runStockKernel(backend, kernelName, args.inputs, args.attrs ?? {});
    }
    const a2 = asMatrix(backend, a, transposeA);
    const b2 = asMatrix(backend, b, transposeB);
    const out = runStockKernel(backend, kernelName, { ...args.inputs, a: a2, b: b2 }, { ...args.attrs, transposeA: false, transposeB: false });
    release(backend, a2, b2);
    out.shape = outShape;
    return out;
  };
}

export const batchMatMulConfig: tf.KernelConfig = {
  kernelName: tf.BatchMatMul,
  backendName: 'wasm',
  kernelFunc: makeMatMul(tf.BatchMatMul) as unknown as tf.KernelFunc,
};

export const fusedMatMulConfig: tf.KernelConfig = {
  kernelName: tf._FusedMatMul,
  backendName: 'wasm',
  kernelFunc: makeMatMul(tf._FusedMatMul) as unknown as tf.KernelFunc,
};
