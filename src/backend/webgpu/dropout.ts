import * as tf from '@tensorflow/tfjs';
import { dispatch, grid, newOutput, pipelineFor, type WebgpuBackendLike } from './dispatch.js';

// tf.dropout draws its random numbers with tf.randomUniform, which is plain JavaScript in
// tfjs-core (no kernel a backend could replace): every training step makes them on the CPU and
// uploads them. tfjs-layers' Dropout layer reaches tf.dropout through module-internal references
// that cannot be redirected, so the hook is the layer class itself: while installed, Dropout.call
// (and so SpatialDropout1D's) builds its keep-mask on the GPU with this kernel, from a counter-based
// hash of (seed, element index), and multiplies as tf.dropout does:
//   mask = floor(u + keepProb) / keepProb,  output = x * mask,  u uniform in [0, 1).
// The seed is drawn from Math.random, as tfjs draws an unseeded dropout's, so runs under our
// seeded Math.random repeat exactly on one backend. Layers given an explicit seed, and every other
// backend, keep the stock path.

export const DROPOUT_MASK_KERNEL = 'TfjsPipelineDropoutMask';
const WORKGROUP = 256;

const SHADER = /* wgsl */ `
struct Params { size : u32, seedLo : u32, seedHi : u32, keepProb : f32, rowStride : u32 };
@group(0) @binding(0) var<storage, read_write> mask : array<f32>;
@group(0) @binding(1) var<uniform> p : Params;

// PCG hash (Jarzynski and Olano, "Hash Functions for GPU Rendering", 2020).
fn pcg(v : u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.y * p.rowStride + gid.x;
  if (i >= p.size) { return; }
  let bits = pcg(pcg(pcg(i) ^ p.seedLo) + p.seedHi);
  let u = f32(bits >> 8u) * (1.0 / 16777216.0);
  mask[i] = floor(u + p.keepProb) / p.keepProb;
}`;

interface MaskAttrs {
  shape: number[];
  keepProb: number;
  seedLo: number;
  seedHi: number;
}

export const dropoutMaskConfig: tf.KernelConfig = {
  kernelName: DROPOUT_MASK_KERNEL,
  backendName: 'webgpu',
  kernelFunc: (args) => {
    const backend = args.backend as unknown as WebgpuBackendLike;
    const { shape, keepProb, seedLo, seedHi } = args.attrs as unknown as MaskAttrs;
    const size = tf.util.sizeFromShape(shape);
    const out = newOutput(backend, shape);
    if (size === 0) return out;
    const [wx, wy] = grid(Math.ceil(size / WORKGROUP));
    dispatch(backend, pipelineFor(backend, 'tfjs-pipeline-dropout-mask', () => SHADER), [out], [wx, wy], [
      { type: 'uint32', data: [size, seedLo, seedHi] },
      { type: 'float32', data: [keepProb] },
      { type: 'uint32', data: [wx * WORKGROUP] },
    ]);
    return out;
  },
};

/** The keep-mask tf.dropout would multiply by, made on the GPU; seed: 53 random bits. */
export function dropoutMask(shape: number[], rate: number, seed: number = Math.random()): tf.Tensor {
  const bits = Math.floor(seed * 2 ** 53);
  const attrs = { shape, keepProb: Math.fround(1 - rate), seedLo: bits % 2 ** 32, seedHi: Math.floor(bits / 2 ** 32) };
  return tf.engine().runKernel(DROPOUT_MASK_KERNEL, {}, attrs as unknown as tf.NamedAttrMap) as tf.Tensor;
}

interface DropoutLayerLike {
  rate: number;
  seed?: number;
  getNoiseShape(input: tf.Tensor): number[] | undefined;
  invokeCallHook(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): void;
}
type CallFn = (this: DropoutLayerLike, inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>) => tf.Tensor | tf.Tensor[];

let stockCall: CallFn | null = null;

function dropoutPrototype(): { call: CallFn } {
  const entry = tf.serialization.SerializationMap.getMap().classNameMap['Dropout'];
  if (!entry) throw new Error('tfjs-layers Dropout class not registered');
  return (entry[0] as unknown as { prototype: { call: CallFn } }).prototype;
}

export function installGpuDropout(): void {
  if (stockCall) return;
  if (!tf.getKernel(DROPOUT_MASK_KERNEL, 'webgpu')) tf.registerKernel(dropoutMaskConfig);
  const proto = dropoutPrototype();
  const stock = proto.call;
  stockCall = stock;
  proto.call = function (this: DropoutLayerLike, inputs, kwargs) {
    const training = kwargs['training'] === true;
    if (!training || this.seed != null || !(this.rate > 0 && this.rate < 1) || tf.getBackend() !== 'webgpu') {
      return stock.call(this, inputs, kwargs);
    }
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    if ((Array.isArray(inputs) && inputs.length !== 1) || input.dtype !== 'float32') return stock.call(this, inputs, kwargs);
    return tf.tidy(() => {
      this.invokeCallHook(inputs, kwargs);
      const mask = dropoutMask(this.getNoiseShape(input) ?? input.shape, this.rate);
      return tf.mul(input, mask);
    });
  };
}

export function uninstallGpuDropout(): void {
  if (!stockCall) return;
  dropoutPrototype().call = stockCall;
  stockCall = null;
}
