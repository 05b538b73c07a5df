import * as tf from '@tensorflow/tfjs';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

// Shared plumbing for the training kernels: they run inside the wasm backend and compose its
// own kernels (XNNPACK convolution and matmul, transpose...) on TensorInfos that never become
// tf.Tensors, so every intermediate they create must be released here by hand.

export type { BackendWasm };

export type Attrs = tf.NamedAttrMap;

/** The kernelFunc of a kernel as it was registered for wasm (stock or ours). */
export function wasmKernelFunc(kernelName: string): tf.KernelFunc {
  const config = tf.getKernel(kernelName, 'wasm');
  if (config == null) throw new Error(`wasm backend has no ${kernelName} kernel`);
  return config.kernelFunc;
}

/**
 * Stock kernels replaced by ours are kept here so that a replacement can still defer to the
 * original for cases it does not cover. Filled by registerWasmTrainingKernels before it
 * unregisters them.
 */
const stockKernels = new Map<string, tf.KernelFunc>();

export function rememberStockKernel(kernelName: string, kernelFunc: tf.KernelFunc): void {
  if (!stockKernels.has(kernelName)) stockKernels.set(kernelName, kernelFunc);
}

export function stockKernelFunc(kernelName: string): tf.KernelFunc | undefined {
  return stockKernels.get(kernelName);
}

/**
 * Registers `config` in place of the wasm kernel of the same name and returns the one it replaced
 * (undefined when there was none, or it is already this one), for the new kernel to fall back on.
 */
export function replaceWasmKernel(config: tf.KernelConfig): tf.KernelConfig | undefined {
  const current = tf.getKernel(config.kernelName, 'wasm');
  if (current?.kernelFunc === config.kernelFunc) return undefined;
  if (current != null) tf.unregisterKernel(config.kernelName, 'wasm');
  // The stock setupFunc binds the C++ function the stock kernelFunc calls; it runs when the
  // backend initialises, so it must stay registered for a fallback to the stock kernel to work.
  tf.registerKernel({ ...config, setupFunc: current?.setupFunc });
  return current;
}

export function runKernel(
  backend: BackendWasm,
  kernelName: string,
  inputs: tf.NamedTensorInfoMap,
  attrs: Attrs,
): tf.TensorInfo {
  return single(wasmKernelFunc(kernelName)({ inputs, backend, attrs }), kernelName);
}

export function runStockKernel(
  backend: BackendWasm,
  kernelName: string,
  inputs: tf.NamedTensorInfoMap,
  attrs: Attrs,
): tf.TensorInfo {
  const func = stockKernelFunc(kernelName) ?? wasmKernelFunc(kernelName);
  return single(func({ inputs, backend, attrs }), kernelName);
}

function single(out: tf.TensorInfo | tf.TensorInfo[], kernelName: string): tf.TensorInfo {
  if (Array.isArray(out)) {
    if (out.length !== 1) throw new Error(`${kernelName} returned ${out.length} outputs, expected 1`);
    return out[0];
  }
  return out;
}

export function release(backend: BackendWasm, ...infos: (tf.TensorInfo | null | undefined)[]): void {
  for (const info of infos) if (info != null) backend.disposeData(info.dataId);
}

/**
 * A Float32Array over a tensor's bytes in the wasm heap. Any allocation on the heap may grow the
 * memory and detach earlier views, so take views only after the last makeOutput of a kernel.
 */
export function heapF32(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  if (info.dtype !== 'float32') throw new Error(`expected a float32 tensor, got ${info.dtype}`);
  return backend.typedArrayFromHeap(info) as Float32Array;
}

export function transpose(backend: BackendWasm, x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
  return runKernel(backend, tf.Transpose, { x }, { perm });
}

export function reshape(backend: BackendWasm, x: tf.TensorInfo, shape: number[]): tf.TensorInfo {
  return runKernel(backend, tf.Reshape, { x }, { shape });
}

export type Explicit4DPadding = [[number, number], [number, number], [number, number], [number, number]];

/** Stride-1 NHWC convolution by the stock XNNPACK kernel, with explicit asymmetric padding. */
export function xnnConv2d(
  backend: BackendWasm,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  pads: { top: number; bottom: number; left: number; right: number },
  dilations: [number, number] = [1, 1],
): tf.TensorInfo {
  const pad: Explicit4DPadding = [
    [0, 0],
    [pads.top, pads.bottom],
    [pads.left, pads.right],
    [0, 0],
  ];
  return runKernel(backend, tf.Conv2D, { x, filter }, { strides: [1, 1], dilations, pad, dataFormat: 'NHWC' });
}

export function assertNHWC(kernelName: string, dataFormat: unknown): void {
  if (dataFormat != null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernelName} on wasm supports NHWC only, got dataFormat ${String(dataFormat)}`);
  }
}
