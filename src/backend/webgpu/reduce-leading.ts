import * as tf from '@tensorflow/tfjs';
import { dispatch, newOutput, pipelineFor, type WebgpuBackendLike } from './dispatch.js';

// Batch norm's statistics and most of its gradient are Sum/Mean over N,H,W of an NHWC tensor, and a
// dense layer's bias gradient is a Sum over the batch axis: always the leading axes, keeping the last.
// tfjs-backend-webgpu reduces only innermost axes, so it first transposes the whole tensor, then runs
// one workgroup per output channel (32 workgroups for a 3.2M-value tensor: most of a GPU idle).
// This kernel reads the tensor as it lies, [rows, channels], with many workgroups each summing a
// chunk of rows for a tile of channels into a partial row, and repeats on the partials until one row
// is left (two or three passes). Other reductions go to the stock kernel.

const WORKGROUP = 256;
/** Rows each thread adds before the workgroup combines them. */
const ROWS_PER_THREAD = 16;
const MAX_GROUPS = 65535;

function shader(tx: number, ty: number): string {
  return /* wgsl */ `
struct Params { rows : u32, cols : u32, rowsPerChunk : u32, divisor : f32 };
@group(0) @binding(0) var<storage, read_write> result : array<f32>;
@group(0) @binding(1) var<storage, read> x : array<f32>;
@group(0) @binding(2) var<uniform> p : Params;
var<workgroup> partial : array<f32, ${tx * ty}>;

@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  let c = wid.x * ${tx}u + lid.x;
  let start = wid.y * p.rowsPerChunk;
  let end = min(start + p.rowsPerChunk, p.rows);
  var acc = 0.0;
  if (c < p.cols) {
    for (var r = start + lid.y; r < end; r = r + ${ty}u) {
      acc = acc + x[r * p.cols + c];
    }
  }
  partial[lid.y * ${tx}u + lid.x] = acc;
  workgroupBarrier();
  for (var s = ${ty / 2}u; s > 0u; s = s >> 1u) {
    if (lid.y < s) {
      partial[lid.y * ${tx}u + lid.x] = partial[lid.y * ${tx}u + lid.x] + partial[(lid.y + s) * ${tx}u + lid.x];
    }
    workgroupBarrier();
  }
  if (lid.y == 0u && c < p.cols) {
    result[wid.y * p.cols + c] = partial[lid.x] / p.divisor;
  }
}`;
}

function tileWidth(cols: number): number {
  let tx = 1;
  while (tx < cols && tx < 64) tx *= 2;
  return tx;
}

/**
 * Sums (or averages) a float32 [rows, cols] tensor over its rows into `outShape` (cols values).
 * Exported for the conv filter gradient, which reduces its split-K partials the same way.
 */
export function reduceRows(
  backend: WebgpuBackendLike,
  x: tf.TensorInfo,
  rows: number,
  cols: number,
  outShape: number[],
  mean: boolean,
): tf.TensorInfo {
  const tx = tileWidth(cols);
  const ty = WORKGROUP / tx;
  const pipeline = pipelineFor(backend, `tfjs-pipeline-reduce-rows-${tx}x${ty}`, () => shader(tx, ty));
  let input = x;
  let remaining = rows;
  for (;;) {
    let rowsPerChunk = ty * ROWS_PER_THREAD;
    while (Math.ceil(remaining / rowsPerChunk) > MAX_GROUPS) rowsPerChunk *= 2;
    const chunks = Math.ceil(remaining / rowsPerChunk);
    const last = chunks === 1;
    const out = newOutput(backend, last ? outShape : [chunks, cols]);
    dispatch(backend, pipeline, [out, input], [Math.ceil(cols / tx), chunks], [
      { type: 'uint32', data: [remaining, cols, rowsPerChunk] },
      { type: 'float32', data: [last && mean ? rows : 1] },
    ]);
    if (input !== x) backend.disposeData(input.dataId);
    if (last) return out;
    input = out;
    remaining = chunks;
  }
}

interface ReduceArgs {
  inputs: { x: tf.TensorInfo };
  backend: WebgpuBackendLike;
  attrs: { axis: number | number[]; keepDims: boolean };
}

/** How many leading axes `axis` names, when it names exactly axes 0..k-1 of x (k < rank); else 0. */
export function leadingAxes(shape: number[], axis: number | number[]): number {
  const rank = shape.length;
  const axes = tf.util.parseAxisParam(axis, shape);
  const sorted = [...new Set(axes)].sort((a, b) => a - b);
  if (sorted.length === 0 || sorted.length >= rank) return 0;
  return sorted.every((a, i) => a === i) ? sorted.length : 0;
}

function makeConfig(kernelName: string, mean: boolean) {
  return (stock: tf.KernelConfig): tf.KernelConfig => ({
    kernelName,
    backendName: 'webgpu',
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args as unknown as ReduceArgs;
      const x = inputs.x;
      const k = x.dtype === 'float32' ? leadingAxes(x.shape, attrs.axis) : 0;
      const size = tf.util.sizeFromShape(x.shape);
      if (k === 0 || size === 0) return stock.kernelFunc(args);
      const rows = tf.util.sizeFromShape(x.shape.slice(0, k));
      const cols = size / rows;
      const outShape = attrs.keepDims ? [...x.shape.slice(0, k).map(() => 1), ...x.shape.slice(k)] : x.shape.slice(k);
      return reduceRows(backend, x, rows, cols, outShape, mean);
    },
  });
}

export const leadingAxesSumConfig = makeConfig('Sum', false);
export const leadingAxesMeanConfig = makeConfig('Mean', true);
