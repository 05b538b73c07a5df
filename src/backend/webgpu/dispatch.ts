/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs';

// tfjs-backend-webgpu's own program path (runWebGPUProgram) binds every input read-only and has a
// single output, so a kernel that updates several buffers in place (Adam's var, m, v) cannot be
// written with it. This helper records our own WGSL pipelines into the backend's command encoder
// and compute pass instead, in the same order as tfjs's kernels, and tells the backend which
// tensors the queued commands use so that a tensor disposed before the queue is submitted keeps
// its buffer until then (the backend's own bookkeeping for its programs).

export interface TensorDataLike {
  resource: unknown;
  dtype: string;
  shape: number[];
  refCount: number;
  /** Values still on the CPU, not yet uploaded. */
  values?: ArrayLike<number> | null;
}

/** The parts of tfjs-backend-webgpu's WebGPUBackend this module uses (its internals, not typed). */
export interface WebgpuBackendLike {
  device: GPUDevice;
  queue: GPUQueue;
  tensorMap: { get(dataId: object): TensorDataLike | undefined; has(dataId: object): boolean };
  uploadToGPU(dataId: object): void;
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  makeUniforms(uniforms: { type: 'int32' | 'uint32' | 'float32'; data: number[] }[]): GPUBufferBinding;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  activeTimers?: unknown[] | null;
}

export function webgpuBackend(): WebgpuBackendLike {
  return tf.backend() as unknown as WebgpuBackendLike;
}

export function isWebgpuActive(): boolean {
  return tf.getBackend() === 'webgpu';
}

const pipelines = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export function pipelineFor(backend: WebgpuBackendLike, key: string, code: () => string): GPUComputePipeline {
  let cache = pipelines.get(backend.device);
  if (!cache) pipelines.set(backend.device, (cache = new Map()));
  let pipeline = cache.get(key);
  if (!pipeline) {
    const module = backend.device.createShaderModule({ code: code(), label: key });
    pipeline = backend.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: key });
    cache.set(key, pipeline);
  }
  return pipeline;
}

export type Uniform = { type: 'int32' | 'uint32' | 'float32'; data: number[] };

/**
 * Records one dispatch. `tensors` are bound at bindings 0..n-1 in order (each uploaded to the GPU
 * first); when `uniforms` is given it is bound at binding n. The shader decides which bindings it
 * writes.
 */
export function dispatch(
  backend: WebgpuBackendLike,
  pipeline: GPUComputePipeline,
  tensors: tf.TensorInfo[],
  workgroups: [number, number?, number?],
  uniforms?: Uniform[],
): void {
  const entries: GPUBindGroupEntry[] = tensors.map((t, i) => {
    backend.uploadToGPU(t.dataId);
    const resource = backend.tensorMap.get(t.dataId)!.resource as GPUBuffer;
    return { binding: i, resource: { buffer: resource } };
  });
  if (uniforms) entries.push({ binding: tensors.length, resource: backend.makeUniforms(uniforms) });
  for (const t of tensors) backend.commandQueueOwnedIds.add(t.dataId);
  const bindGroup = backend.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  backend.ensureCommandEncoderReady();
  if (!backend.computePassEncoder) backend.computePassEncoder = backend.commandEncoder!.beginComputePass({});
  backend.computePassEncoder.setPipeline(pipeline);
  backend.computePassEncoder.setBindGroup(0, bindGroup);
  backend.computePassEncoder.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  backend.dispatchCountInPass++;
  // Same batching rule as tfjs's recordAndSubmit: submit every few dispatches so the GPU starts
  // early; under tf.profile/tf.time (activeTimers) tfjs ends passes itself.
  if (tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= backend.dispatchCountInPass) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
}

/** A new float32 tensor (GPU buffer, contents undefined) for a kernel to fill. */
export function newOutput(backend: WebgpuBackendLike, shape: number[], dtype: tf.DataType = 'float32'): tf.TensorInfo {
  const out = backend.makeTensorInfo(shape, dtype);
  backend.uploadToGPU(out.dataId);
  return out;
}

/** Splits a 1D workgroup count over x and y so no dimension exceeds the WebGPU limit. */
export function grid(workgroups: number): [number, number] {
  const max = 65535;
  if (workgroups <= max) return [Math.max(1, workgroups), 1];
  const y = Math.ceil(workgroups / max);
  return [Math.ceil(workgroups / y), y];
}
