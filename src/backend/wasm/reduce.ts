import * as tf from '@tensorflow/tfjs';
import { heapF32, release, runKernel, runStockKernel, type BackendWasm } from './kernel-utils.js';

// Sums and means over every axis but the channels of an NHWC tensor: bias gradients and batch
// norm statistics, several per training step. The stock wasm reduction first transposes the
// tensor to put the reduced axes innermost, a full copy that dominated these kernels. XNNPACK's
// average pooling over the whole image reduces H and W without one; the remaining sum over
// the batch is B x C values, done here in float64.

function isChannelReduction(x: tf.TensorInfo, axis: number | number[]): boolean {
  if (x.dtype !== 'float32' || x.shape.length !== 4) return false;
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
  return axes.length === 3 && axes[0] === 0 && axes[1] === 1 && axes[2] === 2 && x.shape[1] * x.shape[2] > 1;
}

function reduceChannels(backend: BackendWasm, x: tf.TensorInfo, keepDims: boolean, mean: boolean): tf.TensorInfo {
  const [batch, height, width, channels] = x.shape;
  const pooled = runKernel(
    backend,
    tf.AvgPool,
    { x },
    { filterSize: [height, width], strides: [height, width], pad: 'valid' },
  );
  const out = backend.makeOutput(keepDims ? [1, 1, 1, channels] : [channels], 'float32');
  const dst = heapF32(backend, out);
  const src = heapF32(backend, pooled);
  const scale = mean ? 1 / batch : height * width;
  for (let c = 0; c < channels; c++) {
    let acc = 0;
    for (let b = 0, i = c; b < batch; b++, i += channels) acc += src[i];
    dst[c] = acc * scale;
  }
  release(backend, pooled);
  return out;
}

function makeReduction(kernelName: string, mean: boolean) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo => {
    const backend = args.backend as BackendWasm;
    const { x } = args.inputs as { x: tf.TensorInfo };
    const attrs = args.attrs as unknown as tf.SumAttrs;
    if (isChannelReduction(x, attrs.axis)) return reduceChannels(backend, x, attrs.keepDims === true, mean);
    return runStockKernel(backend, kernelName, args.inputs, args.attrs ?? {});
  };
}

export const sumConfig: tf.KernelConfig = {
  kernelName: tf.Sum,
  backendName: 'wasm',
  kernelFunc: makeReduction(tf.Sum, false) as unknown as tf.KernelFunc,
};

export const meanConfig: tf.KernelConfig = {
  kernelName: tf.Mean,
  backendName: 'wasm',
  kernelFunc: makeReduction(tf.Mean, true) as unknown as tf.KernelFunc,
};
