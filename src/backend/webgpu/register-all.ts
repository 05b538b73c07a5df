import * as tf from '@tensorflow/tfjs';
import { conv2dBackpropFilterConfig } from './conv2d-backprop-filter.js';
import { leadingAxesMeanConfig, leadingAxesSumConfig } from './reduce-leading.js';
import { installGpuDropout, uninstallGpuDropout } from './dropout.js';
import { installFastUploads, uninstallFastUploads } from './uploads.js';

// Our faster webgpu kernels for training, registered over tfjs-backend-webgpu's own. Each keeps the
// stock kernel and hands it every case it does not cover, so registering never changes what is
// computable. The fused Adam optimizer is not a kernel: createOptimizer picks it on webgpu.

type KernelMaker = (stock: tf.KernelConfig) => tf.KernelConfig;

const OVERRIDES: [string, KernelMaker][] = [
  ['Sum', leadingAxesSumConfig],
  ['Mean', leadingAxesMeanConfig],
  ['Conv2DBackpropFilter', conv2dBackpropFilterConfig],
];

const stockKernels = new Map<string, tf.KernelConfig>();

export function registerWebgpuTrainingKernels(): void {
  if (stockKernels.size) return;
  for (const [name, make] of OVERRIDES) {
    const stock = tf.getKernel(name, 'webgpu');
    if (!stock) continue;
    stockKernels.set(name, { ...stock });
    tf.unregisterKernel(name, 'webgpu');
    tf.registerKernel(make(stock));
  }
  installGpuDropout();
  installFastUploads();
}

/** Puts tfjs's own kernels back (benchmarks and tests compare against them). */
export function unregisterWebgpuTrainingKernels(): void {
  for (const [name, stock] of stockKernels) {
    tf.unregisterKernel(name, 'webgpu');
    tf.registerKernel(stock);
  }
  stockKernels.clear();
  uninstallGpuDropout();
  uninstallFastUploads();
}

export function webgpuTrainingKernelsRegistered(): boolean {
  return stockKernels.size > 0;
}
