import * as tf from '@tensorflow/tfjs';
import { initWasmBackend } from '../../../src/backend/wasm/init.js';

// Each comparison computes on the cpu backend (the reference), reads the values out, then
// repeats on wasm with the same inputs; inputs are rebuilt from plain arrays on each backend so
// no tensor crosses backends. TFJS_WASM_THREADS=2 runs the wasm side on the threaded build.

export type BackendName = 'cpu' | 'wasm';

let wasmReady: Promise<unknown> | null = null;

export async function useBackend(name: BackendName): Promise<void> {
  if (name === 'wasm') {
    wasmReady ??= initWasmBackend({ threads: Number(process.env.TFJS_WASM_THREADS ?? 1) });
    await wasmReady;
  }
  if (tf.getBackend() === name) return;
  if (!(await tf.setBackend(name))) throw new Error(`backend ${name} failed to initialise`);
}

/** Values and shape of fn's tensor on the given backend; fn's tensors are all released. */
export async function valuesOn(name: BackendName, fn: () => tf.Tensor): Promise<{ values: Float32Array; shape: number[] }> {
  await useBackend(name);
  const t = tf.tidy(fn);
  const values = t.dataSync() as Float32Array;
  const shape = t.shape;
  t.dispose();
  return { values, shape };
}

/** Values of fn's tensor computed on cpu and on wasm. */
export async function onBoth(fn: () => tf.Tensor): Promise<{ cpu: Float32Array; wasm: Float32Array; shape: number[] }> {
  const cpu = await valuesOn('cpu', fn);
  const wasm = await valuesOn('wasm', fn);
  if (cpu.shape.join() !== wasm.shape.join()) {
    throw new Error(`shape differs: cpu [${cpu.shape}] wasm [${wasm.shape}]`);
  }
  return { cpu: cpu.values, wasm: wasm.values, shape: cpu.shape };
}

/** Deterministic uniform values in [-scale, scale) (mulberry32). */
export function seededValues(size: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

export function seededTensor(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tensor(seededValues(shape.reduce((a, b) => a * b, 1), seed, scale), shape);
}

export interface ErrorStats {
  /** max |actual - expected| */
  abs: number;
  /** abs divided by the largest |expected| (the scale of the result). */
  rel: number;
}

export function maxError(actual: ArrayLike<number>, expected: ArrayLike<number>): ErrorStats {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != ${expected.length}`);
  let abs = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= abs)) abs = d; // also catches NaN
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return { abs, rel: abs / Math.max(scale, 1e-12) };
}

export function describeError(e: ErrorStats): string {
  return `max abs ${e.abs.toExponential(2)}, rel ${e.rel.toExponential(2)}`;
}
