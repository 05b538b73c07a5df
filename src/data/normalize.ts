import { InputError } from '../errors.js';
import type { Normalize, Preprocessing } from './types.js';

// Constants come from the training split alone: computing them over validation or test would let
// the evaluation data leak into what the model is trained on.

export function featureSizeOf(featureShape: number[]): number {
  return featureShape.reduce((a, b) => a * b, 1);
}

export function checkNormalize(normalize: Normalize, dataset: string): void {
  if (normalize === 'none' || normalize === 'minmax' || normalize === 'standard') return;
  if (typeof normalize === 'object' && normalize !== null && typeof normalize.scale === 'number') {
    if (Number.isFinite(normalize.scale) && normalize.scale > 0) return;
    throw new InputError(
      `data set "${dataset}": normalize.scale is ${normalize.scale}; expected a positive number to divide by (255 for 8-bit pixels).`,
    );
  }
  throw new InputError(
    `data set "${dataset}": normalize is ${JSON.stringify(normalize)}; expected "none", "minmax", "standard" or {scale: k}.`,
  );
}

/**
 * Fits the constants on `trainX` (count * featureSize values), one per feature position. Where a
 * feature is constant in training, std is stored as 1 and max as min + 1, so the plain formulas
 * (x - mean) / std and (x - min) / (max - min) never divide by zero wherever they are reimplemented.
 */
export function fitPreprocessing(normalize: Normalize, trainX: Float32Array, featureSize: number, dataset: string): Preprocessing {
  checkNormalize(normalize, dataset);
  if (normalize === 'none') return { kind: 'none' };
  if (typeof normalize === 'object') return { kind: 'scale', scale: normalize.scale };
  const count = trainX.length / featureSize;
  if (count === 0) throw new InputError(`data set "${dataset}": normalize "${normalize}" needs training samples, found none.`);
  if (normalize === 'minmax') {
    const min = new Array<number>(featureSize).fill(Infinity);
    const max = new Array<number>(featureSize).fill(-Infinity);
    for (let i = 0, k = 0; i < count; i++) {
      for (let f = 0; f < featureSize; f++, k++) {
        const v = trainX[k];
        if (v < min[f]) min[f] = v;
        if (v > max[f]) max[f] = v;
      }
    }
    for (let f = 0; f < featureSize; f++) if (max[f] === min[f]) max[f] = min[f] + 1;
    return { kind: 'minmax', min, max };
  }
  const sum = new Float64Array(featureSize);
  for (let i = 0, k = 0; i < count; i++) for (let f = 0; f < featureSize; f++, k++) sum[f] += trainX[k];
  const mean = Array.from(sum, (s) => s / count);
  // Two passes rather than sum of squares: the latter loses precision when mean >> std.
  const sq = new Float64Array(featureSize);
  for (let i = 0, k = 0; i < count; i++) {
    for (let f = 0; f < featureSize; f++, k++) {
      const d = trainX[k] - mean[f];
      sq[f] += d * d;
    }
  }
  const std = Array.from(sq, (s) => {
    const sd = Math.sqrt(s / count);
    return sd > 0 ? sd : 1;
  });
  return { kind: 'standard', mean, std };
}

/** Applies `p` to raw inputs (any number of samples), returning a new array: for inference. */
export function applyPreprocessing(x: Float32Array, featureShape: number[], p: Preprocessing): Float32Array {
  const out = new Float32Array(x.length);
  applyInto(x, out, featureSizeOf(featureShape), p);
  return out;
}

/** The loaders' variant: the same arithmetic, so training and inference see identical values. */
export function applyPreprocessingInPlace(x: Float32Array, featureSize: number, p: Preprocessing): void {
  applyInto(x, x, featureSize, p);
}

function applyInto(src: Float32Array, dst: Float32Array, featureSize: number, p: Preprocessing): void {
  if (featureSize <= 0 || src.length % featureSize !== 0) {
    throw new InputError(
      `preprocessing: expected inputs of whole samples of ${featureSize} values each, found ${src.length} values; ` +
        `check that the input's shape matches the model's feature shape.`,
    );
  }
  if (p.kind === 'none') {
    if (dst !== src) dst.set(src);
    return;
  }
  if (p.kind === 'scale') {
    const k = p.scale;
    for (let i = 0; i < src.length; i++) dst[i] = src[i] / k;
    return;
  }
  const [offset, divisor] = p.kind === 'minmax' ? [p.min, p.max.map((m, f) => m - p.min[f])] : [p.mean, p.std];
  if (offset.length !== featureSize || divisor.length !== featureSize) {
    throw new InputError(
      `preprocessing "${p.kind}": expected constants for ${featureSize} features, found ${offset.length}; ` +
        `the preprocessing belongs to a model with a different feature shape.`,
    );
  }
  for (let i = 0; i < src.length; i += featureSize) {
    for (let f = 0; f < featureSize; f++) dst[i + f] = (src[i + f] - offset[f]) / divisor[f];
  }
}
