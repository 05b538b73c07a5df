import * as tf from '@tensorflow/tfjs';
import { dispatch, newOutput, pipelineFor, type WebgpuBackendLike } from './dispatch.js';
import { reduceRows } from './reduce-leading.js';

// The filter gradient of a conv layer is dW[kh,kw,ci,co] = sum over every output pixel p (N*H*W of
// them, 100,352 at batch 128 on 28x28) of x[pixel under (p, kh, kw), ci] * dy[p, co]. tfjs's webgpu
// kernel gives each of the few thousand outputs one thread that walks all pixels, so a GPU with
// ~250K threads in flight sits mostly idle (36 ms for 28x28x32->32 on the H100). Here the pixel sum
// is split: workgroup (tile, chunk) adds one chunk of pixels for 256 outputs into a partial filter,
// and the partials are summed by the leading-axis reduction (split-K, in matmul terms). Any stride and
// padding is covered (tfjs has no gradient for dilated convs); NCHW and non-float inputs go to the stock kernel.

const WORKGROUP = 256;
/** Cap on partial-filter values (floats) kept between the two passes. */
const MAX_PARTIALS = 4 << 20;
const MIN_PIXELS_PER_CHUNK = 64;

const SHADER = /* wgsl */ `
struct Params {
  batch : i32, inH : i32, inW : i32, inC : i32,
  outH : i32, outW : i32, outC : i32, filterW : i32,
  strideH : i32, strideW : i32, dilationH : i32, dilationW : i32,
  padTop : i32, padLeft : i32, outputs : i32, pixels : i32,
  pixelsPerChunk : i32,
};
@group(0) @binding(0) var<storage, read_write> partials : array<f32>;
@group(0) @binding(1) var<storage, read> x : array<f32>;
@group(0) @binding(2) var<storage, read> dy : array<f32>;
@group(0) @binding(3) var<uniform> p : Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  let o = i32(wid.x * ${WORKGROUP}u + lid.x);
  if (o >= p.outputs) { return; }
  let co = o % p.outC;
  let rest = o / p.outC;
  let ci = rest % p.inC;
  let k = rest / p.inC;
  let kw = k % p.filterW;
  let kh = k / p.filterW;
  let start = i32(wid.y) * p.pixelsPerChunk;
  let end = min(start + p.pixelsPerChunk, p.pixels);
  // Pixel counters advanced incrementally rather than divided out each step.
  var ox = start % p.outW;
  var oy = (start / p.outW) % p.outH;
  var n = start / (p.outW * p.outH);
  let offH = kh * p.dilationH - p.padTop;
  let offW = kw * p.dilationW - p.padLeft;
  var acc = 0.0;
  for (var q = start; q < end; q = q + 1) {
    let iy = oy * p.strideH + offH;
    let ix = ox * p.strideW + offW;
    if (iy >= 0 && iy < p.inH && ix >= 0 && ix < p.inW) {
      acc = acc + x[((n * p.inH + iy) * p.inW + ix) * p.inC + ci] * dy[q * p.outC + co];
    }
    ox = ox + 1;
    if (ox == p.outW) {
      ox = 0;
      oy = oy + 1;
      if (oy == p.outH) { oy = 0; n = n + 1; }
    }
  }
  partials[i32(wid.y) * p.outputs + o] = acc;
}`;

interface Args {
  inputs: { x: tf.TensorInfo; dy: tf.TensorInfo };
  backend: WebgpuBackendLike;
  attrs: {
    strides: number | [number, number];
    pad: Parameters<typeof tf.backend_util.computeConv2DInfo>[4];
    dataFormat: 'NHWC' | 'NCHW';
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
}

export function conv2dBackpropFilterConfig(stock: tf.KernelConfig): tf.KernelConfig {
  return {
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'webgpu',
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args as unknown as Args;
      const { x, dy } = inputs;
      if (attrs.dataFormat === 'NCHW' || x.dtype !== 'float32' || dy.dtype !== 'float32') return stock.kernelFunc(args);
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
      const outputs = tf.util.sizeFromShape(attrs.filterShape);
      const pixels = info.batchSize * info.outHeight * info.outWidth;
      if (outputs === 0 || pixels === 0) return stock.kernelFunc(args);
      const maxChunks = Math.max(1, Math.min(65535, Math.floor(MAX_PARTIALS / outputs)));
      const perChunk = Math.max(MIN_PIXELS_PER_CHUNK, Math.ceil(pixels / maxChunks));
      const chunks = Math.ceil(pixels / perChunk);
      const partials = newOutput(backend, chunks === 1 ? attrs.filterShape : [chunks, outputs]);
      const pipeline = pipelineFor(backend, 'tfjs-pipeline-conv2d-backprop-filter', () => SHADER);
      dispatch(backend, pipeline, [partials, x, dy], [Math.ceil(outputs / WORKGROUP), chunks], [
        {
          type: 'int32',
          data: [info.batchSize, info.inHeight, info.inWidth, info.inChannels],
        },
        { type: 'int32', data: [info.outHeight, info.outWidth, info.outChannels, info.filterWidth] },
        { type: 'int32', data: [info.strideHeight, info.strideWidth, info.dilationHeight, info.dilationWidth] },
        { type: 'int32', data: [info.padInfo.top, info.padInfo.left, outputs, pixels] },
        { type: 'int32', data: [perChunk] },
      ]);
      if (chunks === 1) return partials;
      const result = reduceRows(backend, partials, chunks, outputs, attrs.filterShape, false);
      backend.disposeData(partials.dataId);
      return result;
    },
  };
}
