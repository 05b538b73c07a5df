import * as tf from '@tensorflow/tfjs';

type NamedTensor = { name: string; tensor: tf.Tensor };
import { dispatch, isWebgpuActive, newOutput, pipelineFor, webgpuBackend } from './dispatch.js';

// Stock tf.train.adam runs about a dozen elementwise kernels per variable per step, each with its
// own dispatch and buffer (189 ms a step for the Fashion-MNIST teacher on the H100). Here one WGSL
// dispatch per variable reads (x, g) and updates m and v in place and writes the new x.
//
// The arithmetic repeats tfjs's AdamOptimizer.applyGradients operation by operation, in float32:
//   m' = m*b1 + g*(1-b1);  v' = v*b2 + g^2*(1-b2)
//   x' = ((m'/(1-b1^t)) / (sqrt(v'/(1-b2^t)) + eps)) * (-lr) + x
// b1^t and b2^t are float32 running products, as tfjs keeps them in scalar variables, so results
// agree with the stock path to float32 rounding.
//
// The variable itself is written out of place (a new buffer, then assign): tf.clone and the layers
// API share a variable's buffer with other tensors (e.g. the best-epoch weights our loop keeps), so
// writing into it would change those. m and v belong to this optimizer alone and are written in place.

const WORKGROUP = 256;
const MAX_WORKGROUPS = 65535;

const SHADER = /* wgsl */ `
struct Params {
  beta1 : f32, oneMinusBeta1 : f32, beta2 : f32, oneMinusBeta2 : f32,
  oneMinusAccBeta1 : f32, oneMinusAccBeta2 : f32, epsilon : f32, negLearningRate : f32,
  size : u32, stride : u32,
};
@group(0) @binding(0) var<storage, read_write> xOut : array<f32>;
@group(0) @binding(1) var<storage, read> x : array<f32>;
@group(0) @binding(2) var<storage, read> g : array<f32>;
@group(0) @binding(3) var<storage, read_write> m : array<f32>;
@group(0) @binding(4) var<storage, read_write> v : array<f32>;
@group(0) @binding(5) var<uniform> p : Params;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  for (var i = gid.x; i < p.size; i = i + p.stride) {
    let grad = g[i];
    let mNew = m[i] * p.beta1 + grad * p.oneMinusBeta1;
    let vNew = v[i] * p.beta2 + (grad * grad) * p.oneMinusBeta2;
    m[i] = mNew;
    v[i] = vNew;
    let mHat = mNew / p.oneMinusAccBeta1;
    let vHat = vNew / p.oneMinusAccBeta2;
    xOut[i] = (mHat / (sqrt(vHat) + p.epsilon)) * p.negLearningRate + x[i];
  }
}`;

interface Slot {
  originalName: string;
  variable: tf.Variable;
}

const f32 = Math.fround;

/**
 * Adam with the exact update of tf.train.adam; on the webgpu backend each variable's update is one
 * fused kernel, elsewhere it runs the same formula with tfjs ops. Weights (for saving) are laid out
 * as AdamOptimizer's: iterations, then all first moments, then all second moments.
 */
export class FusedAdamOptimizer extends tf.Optimizer {
  static get className(): string {
    // Serialises as a plain Adam so saved optimizer state loads anywhere.
    return 'Adam';
  }

  private readonly firstMoments: Slot[] = [];
  private readonly secondMoments: Slot[] = [];
  private readonly slotByName = new Map<string, number>();
  /** Float32 values of beta1^t and beta2^t for the next step (t = iterations + 1). */
  private accBeta1: number;
  private accBeta2: number;

  constructor(
    protected learningRate: number,
    protected beta1: number,
    protected beta2: number,
    protected epsilon: number = 1e-7,
  ) {
    super();
    this.accBeta1 = f32(beta1);
    this.accBeta2 = f32(beta2);
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const entries = Array.isArray(variableGradients)
      ? variableGradients.map((v) => [v.name, v.tensor] as const)
      : Object.entries(variableGradients);
    const oneMinusAccBeta1 = f32(1 - this.accBeta1);
    const oneMinusAccBeta2 = f32(1 - this.accBeta2);
    const fused = isWebgpuActive();
    for (const [name, gradient] of entries) {
      if (gradient == null) continue;
      const value = tf.engine().registeredVariables[name];
      const slot = this.slotFor(name, value);
      const m = this.firstMoments[slot].variable;
      const v = this.secondMoments[slot].variable;
      if (fused && value.dtype === 'float32' && gradient.dtype === 'float32') {
        this.fusedUpdate(value, gradient, m, v, oneMinusAccBeta1, oneMinusAccBeta2);
      } else {
        this.opsUpdate(value, gradient, m, v, oneMinusAccBeta1, oneMinusAccBeta2);
      }
    }
    this.accBeta1 = f32(this.accBeta1 * f32(this.beta1));
    this.accBeta2 = f32(this.accBeta2 * f32(this.beta2));
    this.incrementIterations();
  }

  private slotFor(name: string, value: tf.Variable): number {
    let slot = this.slotByName.get(name);
    if (slot === undefined) {
      slot = this.firstMoments.length;
      this.slotByName.set(name, slot);
      this.firstMoments.push({ originalName: `${name}/m`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) });
      this.secondMoments.push({ originalName: `${name}/v`, variable: tf.tidy(() => tf.zerosLike(value).variable(false)) });
    }
    return slot;
  }

  private fusedUpdate(
    value: tf.Variable,
    gradient: tf.Tensor,
    m: tf.Variable,
    v: tf.Variable,
    oneMinusAccBeta1: number,
    oneMinusAccBeta2: number,
  ): void {
    const backend = webgpuBackend();
    // In-place writes into m and v are only safe while nothing else holds their buffers
    // (getWeights hands them out; a caller may have cloned one since).
    for (const moment of [m, v]) {
      if ((backend.tensorMap.get(moment.dataId)?.refCount ?? 1) > 1 || engineRefCount(moment) > 1) {
        moment.assign(tf.tidy(() => tf.add(moment, 0)));
      }
    }
    const size = value.size;
    const pipeline = pipelineFor(backend, 'tfjs-pipeline-fused-adam', () => SHADER);
    const out = newOutput(backend, value.shape);
    const wx = Math.max(1, Math.min(Math.ceil(size / WORKGROUP), MAX_WORKGROUPS));
    dispatch(backend, pipeline, [out, value, gradient, m, v], [wx], [
      { type: 'float32', data: [f32(this.beta1), f32(1 - this.beta1), f32(this.beta2), f32(1 - this.beta2)] },
      { type: 'float32', data: [oneMinusAccBeta1, oneMinusAccBeta2, f32(this.epsilon), f32(-this.learningRate)] },
      { type: 'uint32', data: [size] },
      { type: 'uint32', data: [wx * WORKGROUP] },
    ]);
    const next = tf.engine().makeTensorFromTensorInfo(out);
    value.assign(next);
    next.dispose();
  }

  /** tfjs's AdamOptimizer arithmetic with ops, for other backends and dtypes. */
  private opsUpdate(
    value: tf.Variable,
    gradient: tf.Tensor,
    m: tf.Variable,
    v: tf.Variable,
    oneMinusAccBeta1: number,
    oneMinusAccBeta2: number,
  ): void {
    tf.tidy(() => {
      const newM = tf.add(tf.mul(m, this.beta1), tf.mul(gradient, 1 - this.beta1));
      const newV = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(gradient), 1 - this.beta2));
      const mHat = tf.div(newM, oneMinusAccBeta1);
      const vHat = tf.div(newV, oneMinusAccBeta2);
      m.assign(newM);
      v.assign(newV);
      value.assign(tf.add(tf.mul(tf.div(mHat, tf.add(tf.sqrt(vHat), this.epsilon)), -this.learningRate), value));
    });
  }

  override dispose(): void {
    tf.dispose([...this.firstMoments, ...this.secondMoments].map((s) => s.variable));
    this.firstMoments.length = 0;
    this.secondMoments.length = 0;
    this.slotByName.clear();
  }

  override async getWeights(): Promise<NamedTensor[]> {
    const moments = [...this.firstMoments, ...this.secondMoments];
    return [await this.saveIterations(), ...moments.map((s) => ({ name: s.originalName, tensor: s.variable }))];
  }

  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    this.dispose();
    const half = rest.length / 2;
    for (let i = 0; i < half; i++) {
      const name = rest[i].name.replace(/\/m$/, '');
      this.slotByName.set(name, i);
      this.firstMoments.push({ originalName: rest[i].name, variable: rest[i].tensor.variable(false) });
      this.secondMoments.push({ originalName: rest[i + half].name, variable: rest[i + half].tensor.variable(false) });
    }
    let acc1 = f32(this.beta1);
    let acc2 = f32(this.beta2);
    for (let t = 0; t < this.iterations; t++) {
      acc1 = f32(acc1 * f32(this.beta1));
      acc2 = f32(acc2 * f32(this.beta2));
    }
    this.accBeta1 = acc1;
    this.accBeta2 = acc2;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon };
  }
}

function engineRefCount(t: tf.Tensor): number {
  const state = (tf.engine() as unknown as { state: { tensorInfo: WeakMap<object, { refCount: number }> } }).state;
  return state.tensorInfo.get(t.dataId)?.refCount ?? 1;
}
