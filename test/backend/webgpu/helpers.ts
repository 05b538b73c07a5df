import * as tf from '@tensorflow/tfjs';
import { selectBackend } from '../../../src/backend/select.js';
import {
  registerWebgpuTrainingKernels,
  unregisterWebgpuTrainingKernels,
} from '../../../src/backend/webgpu/register-all.js';

export { describeError, maxError, seededTensor, seededValues } from '../wasm/helpers.js';

// Each comparison runs the same computation three times from the same plain-array inputs: stock
// tfjs on cpu (the reference), stock tfjs on webgpu (our kernels unregistered), and webgpu with our
// kernels. Without a WebGPU adapter (no lavapipe: see ../shared/gpu/README.md) the tests skip.

let webgpu: Promise<string | null> | null = null;

/** null when webgpu works here, else why not. */
export function webgpuUnavailable(): Promise<string | null> {
  webgpu ??= (async () => {
    try {
      await selectBackend('webgpu');
      return null;
    } catch (err) {
      return (err as Error).message;
    }
  })();
  return webgpu;
}

export type Variant = 'cpu' | 'webgpu-stock' | 'webgpu-ours';

export async function useVariant(variant: Variant): Promise<void> {
  if (variant === 'cpu') {
    if (!(await tf.setBackend('cpu'))) throw new Error('cpu backend failed');
    return;
  }
  if (tf.getBackend() !== 'webgpu' && !(await tf.setBackend('webgpu'))) throw new Error('webgpu backend failed');
  if (variant === 'webgpu-ours') registerWebgpuTrainingKernels();
  else unregisterWebgpuTrainingKernels();
}

/** Values of fn's tensors under a variant; every tensor fn makes is released. */
export async function valuesUnder(variant: Variant, fn: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await useVariant(variant);
  const out = tf.tidy(fn);
  const list = Array.isArray(out) ? out : [out];
  const values = await Promise.all(list.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(list);
  return values;
}

/** Skips the whole file, with the reason, when there is no adapter. */
export async function skipWithoutWebgpu(file: string): Promise<boolean> {
  const why = await webgpuUnavailable();
  if (why) console.log(`SKIP ${file}: no WebGPU adapter (${why}); run with eval "$(../shared/gpu/lavapipe.sh)"`);
  return why !== null;
}
