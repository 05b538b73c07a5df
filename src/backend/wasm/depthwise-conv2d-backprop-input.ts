import * as tf from '@tensorflow/tfjs';
import { heapF32, type BackendWasm } from './kernel-utils.js';

// Scatter form (each dy pixel adds filter-weighted values into the dx pixels it was computed
// from) so the inner loop runs over contiguous channels instead of gathering with bounds
// checks per tap.

function depthwiseConv2dNativeBackpropInput(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { dy, filter } = args.inputs as { dy: tf.TensorInfo; filter: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    attrs.dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
  );
  const { batchSize, inHeight, inWidth, inChannels, outHeight, outWidth, outChannels } = info;
  const { filterHeight, filterWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const multiplier = outChannels / inChannels;
  const top = info.padInfo.top;
  const left = info.padInfo.left;

  const dxInfo = backend.makeOutput(attrs.inputShape, 'float32');
  const dx = heapF32(backend, dxInfo);
  const wv = heapF32(backend, filter);
  const dyv = heapF32(backend, dy);
  dx.fill(0);

  for (let b = 0; b < batchSize; b++) {
    for (let oh = 0; oh < outHeight; oh++) {
      for (let ow = 0; ow < outWidth; ow++) {
        const dyBase = ((b * outHeight + oh) * outWidth + ow) * outChannels;
        for (let fh = 0; fh < filterHeight; fh++) {
          const h = oh * strideHeight + fh * dilationHeight - top;
          if (h < 0 || h >= inHeight) continue;
          for (let fw = 0; fw < filterWidth; fw++) {
            const w = ow * strideWidth + fw * dilationWidth - left;
            if (w < 0 || w >= inWidth) continue;
            const dxBase = ((b * inHeight + h) * inWidth + w) * inChannels;
            const wBase = (fh * filterWidth + fw) * outChannels;
            if (multiplier === 1) {
              for (let c = 0; c < inChannels; c++) dx[dxBase + c] += dyv[dyBase + c] * wv[wBase + c];
            } else {
              for (let c = 0; c < inChannels; c++) {
                const k = c * multiplier;
                let sum = 0;
                for (let m = 0; m < multiplier; m++) sum += dyv[dyBase + k + m] * wv[wBase + k + m];
                dx[dxBase + c] += sum;
              }
            }
          }
        }
      }
    }
  }
  return dxInfo;
}

export const depthwiseConv2dNativeBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropInput,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropInput as unknown as tf.KernelFunc,
};
