import * as tf from '@tensorflow/tfjs';
// Loaded here so that the stock kernels are registered before ours replace them; importing it
// later would silently put the stock ones back.
import '@tensorflow/tfjs-backend-wasm';
import { batchMatMulConfig, fusedMatMulConfig } from './batch-mat-mul.js';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter.js';
import { conv2DBackpropInputConfig } from './conv2d-backprop-input.js';
import { depthwiseConv2dNativeBackpropFilterConfig } from './depthwise-conv2d-backprop-filter.js';
import { depthwiseConv2dNativeBackpropInputConfig } from './depthwise-conv2d-backprop-input.js';
import { rememberStockKernel, replaceWasmKernel } from './kernel-utils.js';
import { identityConfig } from './identity.js';
import { maxPoolGradConfig } from './max-pool-grad.js';
import { meanConfig, sumConfig } from './reduce.js';
import { tileConfig } from './tile.js';

/** Kernels tfjs-backend-wasm 4.22 lacks; a training step of a CNN throws without them. */
export const missingKernelConfigs: tf.KernelConfig[] = [
  conv2DBackpropFilterConfig,
  depthwiseConv2dNativeBackpropFilterConfig,
  depthwiseConv2dNativeBackpropInputConfig,
];

/**
 * Stock kernels that exist but are wrong or far too slow for training; ours replace them and
 * keep the stock function for the cases they hand back:
 * - MaxPoolGrad: drops the gradient of windows whose values are all <= 0;
 * - Conv2DBackpropInput: a scalar loop ~10x slower than routing it through XNNPACK;
 * - BatchMatMul, _FusedMatMul: transposed operands fall off XNNPACK onto a scalar loop;
 * - Sum, Mean: per-channel reductions (bias gradients, batch norm) transpose the whole tensor;
 * - Identity: copies, where sharing the buffer is safe (tensors saved for backprop);
 * - Tile: ~100 ns per value (batch-norm gradients tile per-channel vectors to full size).
 */
export const replacementKernelConfigs: tf.KernelConfig[] = [
  maxPoolGradConfig,
  conv2DBackpropInputConfig,
  batchMatMulConfig,
  fusedMatMulConfig,
  sumConfig,
  meanConfig,
  identityConfig,
  tileConfig,
];

export interface RegisterOptions {
  /** Also replace the stock kernels listed in replacementKernelConfigs (default true). */
  replaceStock?: boolean;
}

const registered = new Set<boolean>();

/**
 * Registers the training kernels for the 'wasm' backend. Safe to call more than once, before
 * or after tf.setBackend('wasm').
 */
export function registerWasmTrainingKernels(options: RegisterOptions = {}): void {
  // Once only: kernels layered on top later (src/backend/onnxruntime/) must stay on top.
  if (registered.has(options.replaceStock !== false)) return;
  registered.add(options.replaceStock !== false);
  for (const config of missingKernelConfigs) {
    if (tf.getKernel(config.kernelName, 'wasm') == null) tf.registerKernel(config);
  }
  if (options.replaceStock === false) return;
  for (const config of replacementKernelConfigs) {
    const replaced = replaceWasmKernel(config);
    if (replaced) rememberStockKernel(config.kernelName, replaced.kernelFunc);
  }
}
