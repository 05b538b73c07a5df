import { gzipSync } from 'node:zlib';
import type * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { readModelArtifacts, type WeightsEncoder } from '../models/io.js';

// Post-training weight quantization in the tfjs weights-manifest format, written the way
// tensorflowjs_converter's quantization.py and write_weights.py write it, so that every stock
// loader (tf.loadLayersModel, tf.loadGraphModel, the converter's own reader) dequantizes on load:
//
//   uint8/uint16: affine per tensor, value = q * scale + min, with the range nudged so that 0.0
//                 is an integer q (pruned weights stay exactly 0 after dequantization);
//   float16:      IEEE half precision, round to nearest even (numpy's astype(float16)).
//
// The manifest entry keeps dtype 'float32' (what the tensor is once loaded) and gains
// quantization: {dtype, min, scale, original_dtype}; float16 has no min/scale.

export type QuantizationDtype = 'uint8' | 'uint16' | 'float16';
export const QUANTIZATION_DTYPES: readonly QuantizationDtype[] = ['uint8', 'uint16', 'float16'];

/** What a weight becomes: one of the quantized types, or kept as float32. */
export type WeightEncoding = QuantizationDtype | 'float32';

export interface QuantizationEntry {
  dtype: QuantizationDtype;
  min?: number;
  scale?: number;
  original_dtype?: 'float32';
}

const QUANT_MAX = { uint8: 255, uint16: 65535 } as const;

/** numpy's np.round: halves go to the even neighbour (Math.round sends them up). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The converter's _get_affine_quantization_range: scale spreads [min, max] over the integer range;
 * when 0 lies inside it, min moves (by at most scale/2) so that 0 = q0 * scale + min for an
 * integer q0. One distinct value gets scale 1 and min = that value (every q is 0).
 */
export function affineRange(min: number, max: number, dtype: 'uint8' | 'uint16'): { scale: number; min: number; max: number } {
  const quantMax = QUANT_MAX[dtype];
  if (min === max) return { scale: 1, min, max };
  const scale = (max - min) / quantMax;
  if (min <= 0 && 0 <= max) {
    const zeroPoint = roundHalfEven((0 - min) / scale);
    const nudgedMin = -zeroPoint * scale;
    return { scale, min: nudgedMin, max: quantMax * scale + nudgedMin };
  }
  return { scale, min, max };
}

/** Affine-quantizes one float32 tensor, exactly as the converter's quantize_weights. */
export function quantizeAffine(values: Float32Array, dtype: 'uint8' | 'uint16'): { entry: QuantizationEntry; data: Uint8Array | Uint16Array } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new RangeError(`cannot quantize a non-finite value (${v}) at index ${i}`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const out = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  if (values.length === 0) return { entry: { dtype, min: 0, scale: 1, original_dtype: 'float32' }, data: out };
  const range = affineRange(lo, hi, dtype);
  if (lo !== hi) {
    const quantMax = QUANT_MAX[dtype];
    for (let i = 0; i < values.length; i++) {
      const clipped = Math.min(range.max, Math.max(range.min, values[i]));
      // Guards against q landing one past either end through rounding in the division.
      out[i] = Math.min(quantMax, Math.max(0, roundHalfEven((clipped - range.min) / range.scale)));
    }
  }
  return { entry: { dtype, min: range.min, scale: range.scale, original_dtype: 'float32' }, data: out };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a float32 value, rounding to nearest even (overflow gives infinity). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: units of 2^-24; the float32's implicit leading 1 becomes explicit.
    const shift = 14 - e;
    if (shift >= 25) return sign;
    const m = mantissa | 0x800000;
    const q = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    return sign | (rest > half || (rest === half && (q & 1) === 1) ? q + 1 : q);
  }
  const q = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and 0x7bff + 1 is infinity).
  return sign | (rest > 0x1000 || (rest === 0x1000 && (q & 1) === 1) ? q + 1 : q);
}

export function quantizeFloat16(values: Float32Array): { entry: QuantizationEntry; data: Uint16Array } {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i]);
  return { entry: { dtype: 'float16', original_dtype: 'float32' }, data: out };
}

export function quantizeTensor(values: Float32Array, dtype: QuantizationDtype): { entry: QuantizationEntry; data: Uint8Array | Uint16Array } {
  return dtype === 'float16' ? quantizeFloat16(values) : quantizeAffine(values, dtype);
}

// ---- which weights get which encoding ----

export interface QuantizationSelection {
  /** The encoding of every float32 weight that no pattern in `layers` names. */
  dtype: QuantizationDtype;
  /** Wildcard patterns (on a weight's full name, "dense_1/kernel", or its layer's, "dense_1") to an encoding. */
  layers: Record<string, WeightEncoding>;
  /** Weights with fewer elements keep float32 unless a pattern in `layers` names them. */
  minElements: number;
}

export interface WeightChoice {
  name: string;
  shape: number[];
  encoding: WeightEncoding;
  why: 'default' | 'pattern' | 'below minElements' | 'not float32';
  pattern?: string;
}

/** fnmatch-style: `*` any run of characters (slashes too, as in the converter), `?` one. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

const layerOf = (weightName: string) => weightName.slice(0, Math.max(0, weightName.lastIndexOf('/'))) || weightName;

/**
 * Decides each weight's encoding. Patterns that match nothing, or two patterns giving one weight
 * different encodings (the converter refuses that too), are errors naming `where` and the weights.
 */
export function chooseEncodings(specs: Pick<tf.io.WeightsManifestEntry, 'name' | 'shape' | 'dtype'>[], selection: QuantizationSelection, where: string): WeightChoice[] {
  const patterns = Object.entries(selection.layers).map(([pattern, encoding]) => ({ pattern, encoding, re: globToRegExp(pattern), used: false }));
  const choices = specs.map((spec): WeightChoice => {
    const elements = spec.shape.reduce((a, b) => a * b, 1);
    const matched = patterns.filter((p) => p.re.test(spec.name) || p.re.test(layerOf(spec.name)));
    for (const m of matched) m.used = true;
    const encodings = new Set(matched.map((m) => m.encoding));
    if (encodings.size > 1) {
      throw new InputError(
        `${where}.layers: weight "${spec.name}" is matched by ${matched.map((m) => `"${m.pattern}" (${m.encoding})`).join(' and ')}; ` +
          'make the patterns name it once',
      );
    }
    if (spec.dtype !== 'float32') return { name: spec.name, shape: spec.shape, encoding: 'float32', why: 'not float32' };
    if (matched.length) return { name: spec.name, shape: spec.shape, encoding: matched[0].encoding, why: 'pattern', pattern: matched[0].pattern };
    if (elements < selection.minElements) return { name: spec.name, shape: spec.shape, encoding: 'float32', why: 'below minElements' };
    return { name: spec.name, shape: spec.shape, encoding: selection.dtype, why: 'default' };
  });
  const unused = patterns.filter((p) => !p.used);
  if (unused.length) {
    throw new InputError(
      `${where}.layers: ${unused.map((p) => `"${p.pattern}"`).join(', ')} match${unused.length === 1 ? 'es' : ''} no weight; ` +
        `the model's weights are: ${specs.map((s) => s.name).join(', ')}`,
    );
  }
  return choices;
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };

/** A WeightsEncoder (src/models/io.ts) that quantizes the weights as `choices` say. */
export function quantizingEncoder(choices: WeightChoice[]): WeightsEncoder {
  const byName = new Map(choices.map((c) => [c.name, c]));
  return (specs, data) => {
    const outSpecs: tf.io.WeightsManifestEntry[] = [];
    const parts: Uint8Array[] = [];
    let offset = 0;
    for (const spec of specs) {
      const count = spec.shape.reduce((a, b) => a * b, 1);
      const bytes = count * (BYTES[spec.dtype] ?? NaN);
      if (!Number.isFinite(bytes) || spec.quantization) throw new Error(`internal: cannot re-encode weight "${spec.name}" (${spec.dtype})`);
      const raw = data.subarray(offset, offset + bytes);
      offset += bytes;
      const choice = byName.get(spec.name);
      if (!choice || choice.encoding === 'float32' || spec.dtype !== 'float32') {
        outSpecs.push(spec);
        parts.push(raw);
        continue;
      }
      // A copy: the slice may sit at an offset a Float32Array cannot start at.
      const values = new Float32Array(raw.slice().buffer);
      const q = quantizeTensor(values, choice.encoding);
      outSpecs.push({ ...spec, quantization: q.entry as tf.io.WeightsManifestEntry['quantization'] });
      parts.push(new Uint8Array(q.data.buffer, q.data.byteOffset, q.data.byteLength));
    }
    return { specs: outSpecs, data: concatBytes(parts) };
  };
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

// ---- error and size accounting ----

export interface TensorError {
  name: string;
  shape: number[];
  encoding: WeightEncoding;
  scale?: number;
  min?: number;
  maxAbsError: number;
  meanAbsError: number;
  /** Exact zeros before; of them, still exactly zero after (pruning survives when the two are equal). */
  zerosBefore: number;
  zerosKept: number;
  /** Exact zeros after, including small weights that rounded to zero. */
  zerosAfter: number;
}

export function compareTensors(
  original: ArrayLike<number>,
  restored: ArrayLike<number>,
): Pick<TensorError, 'maxAbsError' | 'meanAbsError' | 'zerosBefore' | 'zerosKept' | 'zerosAfter'> {
  let max = 0;
  let sum = 0;
  let zerosBefore = 0;
  let zerosKept = 0;
  let zerosAfter = 0;
  for (let i = 0; i < original.length; i++) {
    const d = Math.abs(original[i] - restored[i]);
    if (d > max) max = d;
    sum += d;
    if (original[i] === 0) {
      zerosBefore++;
      if (restored[i] === 0) zerosKept++;
    }
    if (restored[i] === 0) zerosAfter++;
  }
  return { maxAbsError: max, meanAbsError: original.length ? sum / original.length : 0, zerosBefore, zerosKept, zerosAfter };
}

export interface ByteSizes {
  /** Bytes of the weight shards, as stored. */
  raw: number;
  /** The shards concatenated and gzipped at level 9 (what a web server would send). */
  gzip: number;
}

export function sizesOf(bytes: Uint8Array): ByteSizes {
  return { raw: bytes.byteLength, gzip: gzipSync(bytes, { level: 9 }).byteLength };
}

/** Sizes of a stored model's weights (model.json's shards, in manifest order). */
export async function storedWeightSizes(modelJsonPath: string): Promise<ByteSizes> {
  const artifacts = await readModelArtifacts(modelJsonPath);
  return sizesOf(new Uint8Array(artifacts.weightData as ArrayBuffer));
}
