import * as tf from '@tensorflow/tfjs';

// tfjs-core's gradients of Sum and Mean broadcast dy by multiplying it with `ones(x.shape)`, a
// tensor filled in JavaScript and uploaded to the device on every call: for a batch-norm layer of
// 128x28x28x32 that is 12.8 MB made on the CPU and copied to the GPU several times per step,
// which on the H100 took ~100 ms of a batch-norm backward whose shaders ran in 0.5 ms. Broadcasting
// with broadcastTo (a Tile kernel on the device) gives bit-identical values (dy * 1 == dy).

function expandedShape(xShape: number[], axis: number | number[]): number[] {
  const axes = tf.util.parseAxisParam(axis, xShape);
  const shape = xShape.slice();
  for (const a of axes) shape[a] = 1;
  return shape;
}

const sumGrad: tf.GradConfig = {
  kernelName: tf.Sum,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const { axis } = attrs as unknown as tf.SumAttrs;
    const expanded = tf.reshape(dy as tf.Tensor, expandedShape(x.shape, axis));
    return { x: () => tf.broadcastTo(expanded, x.shape) };
  },
};

const meanGrad: tf.GradConfig = {
  kernelName: tf.Mean,
  inputsToSave: ['x'],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved;
    const { axis } = attrs as unknown as tf.MeanAttrs;
    const shape = expandedShape(x.shape, axis);
    const reduceSize = x.size / tf.util.sizeFromShape(shape);
    return { x: () => tf.div(tf.broadcastTo(tf.reshape(dy as tf.Tensor, shape), x.shape), reduceSize) };
  },
};

let registered = false;

/** Replaces tfjs-core's Sum and Mean gradients (global to tfjs, the same on every backend). */
export function registerDeviceSideGradients(): void {
  if (registered) return;
  registered = true;
  tf.registerGradient(sumGrad);
  tf.registerGradient(meanGrad);
}
