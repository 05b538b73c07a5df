/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs';
import { webgpuBackend, type WebgpuBackendLike } from './dispatch.js';

// A training step on webgpu is CPU-bound, not shader-bound (bench/gpu/step-profile.ts on the H100:
// the teacher at batch 512 enqueues for 105 ms and its kernels run for 16 ms). Two costs of
// tfjs-backend-webgpu dominate the CPU side there, and both are settings of how it talks to Dawn:
//
// - Every tensor built on the CPU (the scalars and small vectors layers create each step: batch
//   norm momentum, epsilon, loss constants) is uploaded through a fresh mapped-at-creation buffer,
//   i.e. one or two createBuffer calls per upload (17% of the step). Writing the values with
//   queue.writeBuffer into a pooled buffer (what tfjs already does for uniforms) creates none.
// - The queue is submitted every 15 dispatches (WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE), and each
//   submit costs about a millisecond in Dawn's Node binding (32% of the step). Submitting every
//   few hundred dispatches keeps the GPU fed (a step is a few hundred dispatches) at a fraction of it.

const SUBMIT_BATCH_SIZE = 256;
const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // GPUBufferUsage.STORAGE | COPY_SRC | COPY_DST

interface UploadingBackend extends WebgpuBackendLike {
  bufferManager: { acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GPUBuffer };
}

let original: { upload: (dataId: object) => void; submitBatch: number; backend: UploadingBackend } | undefined;

export function installFastUploads(): void {
  if (original || tf.getBackend() !== 'webgpu') return;
  const backend = webgpuBackend() as UploadingBackend;
  const upload = backend.uploadToGPU;
  original = { upload, submitBatch: tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE'), backend };
  backend.uploadToGPU = function (this: UploadingBackend, dataId: object) {
    const data = this.tensorMap.get(dataId);
    // Only CPU values of 4-byte types take the new path (webgpu stores bool as int32); the rest is tfjs's.
    if (!data || data.resource != null || !data.values || !['float32', 'int32', 'bool'].includes(data.dtype)) {
      return upload.call(this, dataId);
    }
    const count = data.shape.reduce((a, b) => a * b, 1);
    if (count === 0) return upload.call(this, dataId);
    const buffer = this.bufferManager.acquireBuffer(count * 4, STORAGE_USAGE);
    const values =
      data.dtype === 'float32'
        ? data.values instanceof Float32Array ? data.values : Float32Array.from(data.values)
        : data.values instanceof Int32Array ? data.values : Int32Array.from(data.values);
    this.queue.writeBuffer(buffer, 0, values.buffer, values.byteOffset, values.byteLength);
    data.values = null;
    data.resource = buffer;
  };
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', SUBMIT_BATCH_SIZE);
}

export function uninstallFastUploads(): void {
  if (!original) return;
  original.backend.uploadToGPU = original.upload;
  tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', original.submitBatch);
  original = undefined;
}
