import * as tf from '@tensorflow/tfjs';
import { heapF32, type BackendWasm } from './kernel-utils.js';

// Depthwise gradients have no GEMM shape worth handing to XNNPACK (each channel is its own
// tiny problem), so these are direct loops over the heap with the channel axis innermost,
// which is contiguous in x, dy and the filter alike.

function depthwiseConv2dNativeBackpropFilter(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: unknown;
  attrs?: tf.NamedAttrMap;
}): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x, dy } = args.inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const attrs = args.attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
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

  const dwInfo = backend.makeOutput(attrs.filterShape, 'float32');
  const dw = heapF32(backend, dwInfo);
  const xv = heapF32(backend, x);
  const dyv = heapF32(backend, dy);
  dw.fill(0);

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
            const xBase = ((b * inHeight + h) * inWidth + w) * inChannels;
            const dwBase = (fh * filterWidth + fw) * outChannels;
            if (multiplier === 1) {
              for (let c = 0; c < inChannels; c++) dw[dwBase + c] += xv[xBase + c] * dyv[dyBase + c];
            } else {
              for (let c = 0; c < inChannels; c++) {
                const xc = xv[xBase + c];
                const k = c * multiplier;
                for (let m = 0; m < multiplier; m++) dw[dwBase + k + m] += xc * dyv[dyBase + k + m];
              }
            }
          }
        }
      }
    }
  }
  return dwInfo;
}

export const depthwiseConv2dNativeBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
  backendName: 'wasm',
  kernelFunc: depthwiseConv2dNativeBackpropFilter as unknown as tf.KernelFunc,
};
