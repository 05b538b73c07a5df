import { InputError } from '../errors.js';
import { permutation, type Rng } from '../random.js';
import type { DataSplit, SplitSize } from './types.js';

export interface SplitIndices {
  train: Int32Array;
  validation: Int32Array;
  test: Int32Array;
}

/**
 * A split size as a count of samples out of `total`: below 1 it is a fraction (rounded to the
 * nearest sample), from 1 up a whole count.
 */
export function resolveSplitSize(size: SplitSize | undefined, fallback: number, total: number, what: string, dataset: string): number {
  const value = size ?? fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InputError(
      `data set "${dataset}": ${what} is ${JSON.stringify(value)}; expected a fraction in [0, 1) or a whole number of samples >= 1.`,
    );
  }
  if (value < 1) return Math.round(value * total);
  if (!Number.isInteger(value)) {
    throw new InputError(
      `data set "${dataset}": ${what} is ${value}; a size of 1 or more counts samples and must be a whole number ` +
        `(write a fraction below 1, e.g. 0.1, for a share of the data).`,
    );
  }
  return value;
}

/**
 * Shuffles 0..total-1 once and cuts it: test first, then validation, train the rest. Test comes
 * first so that changing only the validation size leaves the test set as it was.
 */
export function seededSplit(total: number, sizes: { validation: number; test: number }, rng: Rng, dataset: string): SplitIndices {
  const { validation, test } = sizes;
  if (validation + test >= total) {
    throw new InputError(
      `data set "${dataset}": the split takes ${validation} validation + ${test} test samples out of ${total}, ` +
        `leaving none to train on; lower split.validation or split.test.`,
    );
  }
  const order = permutation(total, rng);
  return {
    test: order.slice(0, test),
    validation: order.slice(test, test + validation),
    train: order.slice(test + validation),
  };
}

/** `count` distinct indices out of 0..total-1, chosen by `rng`, in ascending order. */
export function seededSubset(total: number, count: number, rng: Rng, what: string, dataset: string): Int32Array {
  if (!Number.isInteger(count) || count < 1) {
    throw new InputError(`data set "${dataset}": ${what} is ${JSON.stringify(count)}; expected a whole number of samples >= 1.`);
  }
  if (count > total) {
    throw new InputError(
      `data set "${dataset}": ${what} asks for ${count} samples but only ${total} are available; lower ${what} or leave it out.`,
    );
  }
  return permutation(total, rng).slice(0, count).sort();
}

/** Maps indices into a subset back to indices into the full table. */
export function compose(outer: Int32Array, inner: Int32Array): Int32Array {
  const out = new Int32Array(inner.length);
  for (let i = 0; i < inner.length; i++) out[i] = outer[inner[i]];
  return out;
}

/**
 * Copies the samples at `indices` into one contiguous split. `x` may be the raw bytes of an IDX
 * file: TypedArray.set converts each uint8 to float32 exactly.
 */
export function gather(x: Float32Array | Uint8Array, y: Int32Array | Uint8Array, featureSize: number, indices: Int32Array): DataSplit {
  const count = indices.length;
  const outX = new Float32Array(count * featureSize);
  const outY = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const src = indices[i];
    outX.set(x.subarray(src * featureSize, (src + 1) * featureSize), i * featureSize);
    outY[i] = y[src];
  }
  return { x: outX, y: outY, count };
}
