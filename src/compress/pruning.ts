import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { globToRegExp } from './quantization.js';

// Magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune"): every `frequency` steps
// between beginStep and endStep, each pruned layer's kernel gets a fresh mask that zeroes its
// smallest-magnitude weights, up to the sparsity its schedule gives for that step; after every
// optimizer step the masks are multiplied back in, so a pruned weight stays exactly 0 however the
// optimizer's momentum pushes it. Masks live outside the model: the model stays a plain tfjs
// layers model and is saved as one.

export type ScheduleKind = 'polynomial' | 'constant';

/** A schedule in optimizer steps (the prune stage converts its epoch options to steps). */
export interface PruningSchedule {
  kind: ScheduleKind;
  /** s_i: the sparsity at beginStep (polynomial only). */
  initialSparsity: number;
  /** s_f: the sparsity from endStep on. */
  finalSparsity: number;
  /** t0: the first step that prunes (0: before the first optimizer step). */
  beginStep: number;
  /** t0 + n * dt: the step the final sparsity is reached; masks are fixed after it. */
  endStep: number;
  /** dt: masks are recomputed every `frequency` steps from beginStep, and at endStep. */
  frequency: number;
  /** The exponent of the polynomial, 3 in the paper. */
  power?: number;
}

/**
 * The target sparsity at step t. Polynomial: s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3,
 * s_i before t0 and s_f after t0 + n * dt. Constant: 0 before t0, s_f from it on.
 */
export function scheduledSparsity(s: PruningSchedule, step: number): number {
  if (s.kind === 'constant') return step >= s.beginStep ? s.finalSparsity : 0;
  if (step >= s.endStep) return s.finalSparsity;
  if (step <= s.beginStep) return s.initialSparsity;
  const progress = (step - s.beginStep) / (s.endStep - s.beginStep);
  return s.finalSparsity + (s.initialSparsity - s.finalSparsity) * (1 - progress) ** (s.power ?? 3);
}

/** Whether masks are recomputed after `step` optimizer steps. */
export function isPruningStep(s: PruningSchedule, step: number): boolean {
  if (step < s.beginStep || step > s.endStep) return false;
  return step === s.endStep || (step - s.beginStep) % s.frequency === 0;
}

/** The same schedule with another final sparsity (per-layer targets share one timetable). */
export function withFinalSparsity(s: PruningSchedule, finalSparsity: number): PruningSchedule {
  return { ...s, finalSparsity, initialSparsity: Math.min(s.initialSparsity, finalSparsity) };
}

/** How many of `count` weights a sparsity prunes: exactly round(sparsity * count). */
export const prunedCount = (sparsity: number, count: number) => Math.round(sparsity * count);

/**
 * A 0/1 mask that zeroes exactly prunedCount(sparsity, n) of the smallest |values|; among equal
 * magnitudes at the threshold the lower indices go first, so the result never depends on sort order.
 */
export function magnitudeMask(values: ArrayLike<number>, sparsity: number): Uint8Array {
  const n = values.length;
  const mask = new Uint8Array(n).fill(1);
  const k = prunedCount(sparsity, n);
  if (k <= 0) return mask;
  if (k >= n) return mask.fill(0);
  const magnitudes = new Float32Array(n);
  for (let i = 0; i < n; i++) magnitudes[i] = Math.abs(values[i]);
  const threshold = magnitudes.slice().sort()[k - 1];
  let below = 0;
  for (let i = 0; i < n; i++) if (magnitudes[i] < threshold) below++;
  let ties = k - below;
  for (let i = 0; i < n; i++) {
    if (magnitudes[i] < threshold) mask[i] = 0;
    else if (magnitudes[i] === threshold && ties > 0) {
      mask[i] = 0;
      ties--;
    }
  }
  return mask;
}

/**
 * magnitudeMask computed where the weights are, as a float 0/1 tensor of their shape: a GPU backend
 * cannot read weights back synchronously, and the training loop's afterStep is synchronous. tfjs's
 * topk breaks ties by lower index, like magnitudeMask.
 */
export function magnitudeMaskTensor(weights: tf.Tensor, sparsity: number): tf.Tensor {
  const n = weights.size;
  const k = prunedCount(sparsity, n);
  return tf.tidy(() => {
    if (k <= 0) return tf.onesLike(weights);
    if (k >= n) return tf.zerosLike(weights);
    const { indices } = tf.topk(tf.neg(tf.abs(tf.reshape(weights, [n]))), k, false);
    const pruned = tf.scatterND(tf.reshape(indices, [k, 1]), tf.ones([k]), [n]);
    return tf.reshape(tf.sub(1, pruned), weights.shape);
  });
}

// ---- which layers, at which sparsity ----

/** A layer whose kernel can be pruned: dense, conv2d, depthwiseConv2d (biases and batch-norm never are). */
export interface PrunableLayer {
  /** The layer's name in the model ("dense_Dense1", or the `name` given in the pipeline file). */
  layer: string;
  /** tfjs class name: Dense, Conv2D, DepthwiseConv2D. */
  type: string;
  weight: tf.LayerVariable;
}

const isKernel = (w: tf.LayerVariable) => /kernel$/.test(w.originalName.split('/').pop() ?? '');

export function prunableLayers(model: tf.LayersModel): PrunableLayer[] {
  return model.layers.flatMap((layer) =>
    layer.trainableWeights.filter(isKernel).map((weight) => ({ layer: layer.name, type: layer.getClassName(), weight })),
  );
}

export interface LayerTargetOptions {
  /** The final sparsity of every prunable layer not named below. */
  sparsity: number;
  /** Selector -> final sparsity for the layers it selects. */
  layers: Record<string, number>;
  /** Selectors of layers left dense. */
  exclude: string[];
}

/**
 * Selectors, most specific first: a layer name (wildcards * and ?), `first:TYPE` / `last:TYPE`
 * (also plain `first` / `last`: the first or last prunable layer), a layer type (dense, conv2d,
 * depthwiseConv2d; tfjs class names work too). A layer takes the target of its most specific
 * selector; `exclude` wins over targets.
 */
export function selectorMatches(selector: string, layers: readonly Pick<PrunableLayer, 'layer' | 'type'>[], index: number): number {
  const { layer, type } = layers[index];
  if (globToRegExp(selector).test(layer)) return 3;
  const positional = /^(first|last)(?::(.+))?$/.exec(selector);
  if (positional) {
    const [, which, wanted] = positional;
    const candidates = layers.map((l, i) => ({ l, i })).filter(({ l }) => !wanted || l.type.toLowerCase() === wanted.toLowerCase());
    const pick = which === 'first' ? candidates[0] : candidates.at(-1);
    return pick?.i === index ? 2 : 0;
  }
  return type.toLowerCase() === selector.toLowerCase() ? 1 : 0;
}

export interface LayerTarget extends PrunableLayer {
  /** Final sparsity; 0 for an excluded layer. */
  target: number;
  excluded: boolean;
  /** The selector that set the target, or "sparsity" for the stage-wide default. */
  source: string;
}

/** Every prunable layer with its final sparsity; selectors matching no prunable layer are errors naming `where`. */
export function resolveLayerTargets(layers: PrunableLayer[], o: LayerTargetOptions, where: string): LayerTarget[] {
  if (layers.length === 0) {
    throw new InputError(`${where}: the model has no prunable layer (a dense, conv2d or depthwiseConv2d kernel)`);
  }
  const known = () => layers.map((l) => `${l.layer} (${l.type})`).join(', ');
  const unmatched = (key: string, selectors: string[]) => {
    const bad = selectors.filter((sel) => !layers.some((_, i) => selectorMatches(sel, layers, i) > 0));
    if (bad.length) {
      throw new InputError(
        `${where}.${key}: ${bad.map((b) => `"${b}"`).join(', ')} select${bad.length === 1 ? 's' : ''} no prunable layer; ` +
          `use a layer name, a type, or first:TYPE / last:TYPE; the prunable layers are: ${known()}`,
      );
    }
  };
  unmatched('layers', Object.keys(o.layers));
  unmatched('exclude', o.exclude);
  return layers.map((l, i) => {
    const excludedBy = o.exclude.find((sel) => selectorMatches(sel, layers, i) > 0);
    if (excludedBy !== undefined) return { ...l, target: 0, excluded: true, source: excludedBy };
    let best: { selector: string; rank: number; value: number } | undefined;
    for (const [selector, value] of Object.entries(o.layers)) {
      const rank = selectorMatches(selector, layers, i);
      if (rank === 0) continue;
      if (best && rank === best.rank && value !== best.value) {
        throw new InputError(
          `${where}.layers: "${best.selector}" and "${selector}" both select layer ${l.layer} with different sparsities; ` +
            'name it with one selector',
        );
      }
      if (!best || rank > best.rank) best = { selector, rank, value };
    }
    return { ...l, target: best?.value ?? o.sparsity, excluded: false, source: best?.selector ?? 'sparsity' };
  });
}

// ---- masks on a live model ----

export interface LayerSparsity {
  layer: string;
  type: string;
  weight: string;
  shape: number[];
  elements: number;
  target: number;
  /** Exact zeros in the kernel now. */
  zeros: number;
  sparsity: number;
  excluded: boolean;
}

/**
 * Holds one mask tensor per pruned kernel and keeps the kernels masked. Hook `afterStep` into the
 * training loop's callbacks (src/train/loop.ts) and call `afterStep(0)` once before training.
 */
export class MagnitudePruner {
  private readonly masks = new Map<tf.LayerVariable, tf.Tensor>();
  /** Optimizer steps at which masks were recomputed, with the stage-wide scheduled sparsity. */
  readonly updates: { step: number; sparsity: number }[] = [];

  constructor(
    readonly targets: LayerTarget[],
    readonly schedule: PruningSchedule,
  ) {}

  private get pruned(): LayerTarget[] {
    return this.targets.filter((t) => !t.excluded && t.target > 0);
  }

  /** After `step` optimizer steps: recompute the masks when the schedule says so, then apply them. */
  afterStep(step: number): void {
    if (isPruningStep(this.schedule, step)) this.updateMasks(step);
    this.applyMasks();
  }

  updateMasks(step: number): void {
    for (const t of this.pruned) {
      const sparsity = scheduledSparsity(withFinalSparsity(this.schedule, t.target), step);
      const mask = magnitudeMaskTensor(t.weight.read(), sparsity);
      this.masks.get(t.weight)?.dispose();
      this.masks.set(t.weight, mask);
    }
    this.updates.push({ step, sparsity: scheduledSparsity(this.schedule, step) });
  }

  applyMasks(): void {
    tf.tidy(() => {
      for (const [weight, mask] of this.masks) weight.write(tf.mul(weight.read(), mask));
    });
  }

  /** Per-layer sparsity as the weights are now (read back from the device). */
  async table(): Promise<LayerSparsity[]> {
    const rows: LayerSparsity[] = [];
    for (const t of this.targets) {
      const { zeros, elements } = await countZeros(t.weight.read());
      rows.push({
        layer: t.layer,
        type: t.type,
        weight: t.weight.originalName,
        shape: t.weight.shape as number[],
        elements,
        target: t.target,
        zeros,
        sparsity: elements ? zeros / elements : 0,
        excluded: t.excluded,
      });
    }
    return rows;
  }

  /** The masks (of the kernels masked so far, in target order) and the updates, for a checkpoint. */
  saveState(): { tensors: tf.Tensor[]; json: PrunerState } {
    const masked = this.pruned.filter((t) => this.masks.has(t.weight));
    return {
      tensors: masked.map((t) => this.masks.get(t.weight)!),
      json: { masked: masked.map((t) => t.weight.originalName), updates: this.updates },
    };
  }

  /** Takes over saveState()'s masks (copies: the caller keeps its tensors) and updates, replacing its own. */
  restoreState(state: { tensors: tf.Tensor[]; json: unknown }): void {
    const { masked, updates } = state.json as PrunerState;
    this.dispose();
    masked.forEach((name, i) => {
      const target = this.pruned.find((t) => t.weight.originalName === name);
      if (!target) throw new Error(`internal: the checkpoint masks "${name}", which this pruner does not prune`);
      this.masks.set(target.weight, tf.clone(state.tensors[i]));
    });
    this.updates.splice(0, this.updates.length, ...updates);
  }

  dispose(): void {
    tf.dispose([...this.masks.values()]);
    this.masks.clear();
  }
}

interface PrunerState {
  /** Kernels by their weight names (layer/kernel), which the stage's named or rebuilt layers keep. */
  masked: string[];
  updates: { step: number; sparsity: number }[];
}

/** Exact zeros in a tensor, read with data(): dataSync throws on webgpu in Node. */
export async function countZeros(t: tf.Tensor): Promise<{ zeros: number; elements: number }> {
  const values = await t.data();
  let zeros = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) zeros++;
  return { zeros, elements: values.length };
}

/** Zeros over elements across the rows given (all prunable kernels, or the whole model). */
export function overallSparsity(rows: Pick<LayerSparsity, 'zeros' | 'elements'>[]): number {
  const elements = rows.reduce((n, r) => n + r.elements, 0);
  return elements ? rows.reduce((n, r) => n + r.zeros, 0) / elements : 0;
}
