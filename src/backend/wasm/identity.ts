import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from './kernel-utils.js';

// tfjs-core clones every tensor it saves for backprop (Engine.saveTensorsForBackwardMode); the
// stock wasm Identity copies the bytes, several MB per conv layer per step. wasm tensors are
// never written in place once made (Reshape already shares its input's buffer), so the clone
// can share the buffer by reference count, as the cpu backend does.

function identity(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as { x: tf.TensorInfo };
  backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

export const identityConfig: tf.KernelConfig = {
  kernelName: tf.Identity,
  backendName: 'wasm',
  kernelFunc: identity as unknown as tf.KernelFunc,
};
