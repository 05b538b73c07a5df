import * as tf from '@tensorflow/tfjs';
import { replaceWasmKernel } from '../wasm/kernel-utils.js';
import { registerWasmTrainingKernels } from '../wasm/register-all.js';
import { onnxruntimeKernelConfigs, onnxruntimeKernelOptions, previousKernels } from './kernels.js';
import { loadOnnxruntime, sessionSettings } from './sessions.js';

/**
 * Puts the onnxruntime kernels in front of the wasm backend's (ours and stock), which remain
 * the fallback for what they do not cover. Throws when onnxruntime-node cannot load. Must run
 * before the wasm backend starts, like registerWasmTrainingKernels.
 */
export function registerOnnxruntimeKernels(): void {
  loadOnnxruntime();
  registerWasmTrainingKernels();
  for (const config of onnxruntimeKernelConfigs) {
    const replaced = replaceWasmKernel(config);
    if (replaced && !previousKernels.has(config.kernelName)) previousKernels.set(config.kernelName, replaced);
  }
}

/**
 * Runs one convolution through onnxruntime on the active wasm backend and checks its values
 * against a direct sum, so that a backend reported as loaded has actually computed; returns
 * onnxruntime's thread count.
 */
export function checkOnnxruntimeKernels(): number {
  const minMacs = onnxruntimeKernelOptions.minMacs;
  onnxruntimeKernelOptions.minMacs = 0;
  try {
    checkConvolution();
  } catch (err) {
    unregisterOnnxruntimeKernels();
    throw err;
  } finally {
    onnxruntimeKernelOptions.minMacs = minMacs;
  }
  return sessionSettings.threads;
}

/** Puts back the kernels registerOnnxruntimeKernels replaced (the wasm backend's own). */
function unregisterOnnxruntimeKernels(): void {
  for (const config of onnxruntimeKernelConfigs) {
    if (tf.getKernel(config.kernelName, 'wasm')?.kernelFunc !== config.kernelFunc) continue;
    tf.unregisterKernel(config.kernelName, 'wasm');
    const previous = previousKernels.get(config.kernelName);
    if (previous) tf.registerKernel(previous);
  }
}

function checkConvolution(): void {
  const x = tf.tensor4d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], [1, 4, 4, 1]).tile([1, 1, 1, 4]);
  const w = tf.ones([3, 3, 4, 2]);
  const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid');
  const values = Array.from(y.dataSync());
  tf.dispose([x, w, y]);
  // Each output sums a 3x3 window over 4 identical channels.
  const expected = [54, 54, 63, 63, 90, 90, 99, 99].map((v) => v * 4);
  if (values.some((v, i) => v !== expected[i])) {
    throw new Error(`onnxruntime's convolution returned [${values}], expected [${expected}]`);
  }
}
