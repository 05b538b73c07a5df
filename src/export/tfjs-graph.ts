import { join } from 'node:path';
import { InputError } from '../errors.js';
import { float32ToFloat16Bits, type QuantizationEntry } from '../compress/quantization.js';
import { concatBytes, DEFAULT_SHARD_BYTES } from '../models/io.js';
import { writeFileSynced } from '../util/fs.js';
import type { ExportGraph } from './graph-ir.js';
import { buildGraphDefWithConstants, signatureFor, TF_VERSION, type GraphConstant, type GraphDefOptions } from './graph-def.js';
import type { GraphDefObject, TensorInfoObject } from './tf-proto.js';

// A tfjs graph model (model.json + weight shards) written the way tensorflowjs_converter writes
// one, so that stock tf.loadGraphModel loads it: modelTopology is the frozen GraphDef in JSON
// form, and every Const node's data is one entry of a single weight group, in node order,
// concatenated and cut into shards of at most 4 MiB (a weight may straddle two shards; the loader
// concatenates them first). Quantized constants are stored as their codes with the converter's
// manifest entry, so the model is as small as the layers model it came from.


export interface TfjsGraphOptions extends GraphDefOptions {
  /** Largest weight shard in bytes (default 4 MiB). */
  shardBytes?: number;
}

export interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  quantization?: QuantizationEntry;
}

export interface GraphModelJson {
  format: 'graph-model';
  generatedBy: string;
  convertedBy: string;
  signature: { inputs: Record<string, TensorInfoObject>; outputs: Record<string, TensorInfoObject> };
  modelTopology: GraphDefObject;
  weightsManifest: { paths: string[]; weights: ManifestWeight[] }[];
}

export interface TfjsGraphArtifacts {
  modelJson: GraphModelJson;
  /** The shard files' bytes, in the order of weightsManifest[0].paths. */
  shards: Uint8Array[];
}

/** model.json and shard bytes in memory (what writeTfjsGraphModel writes). */
export function tfjsGraphArtifacts(graph: ExportGraph, options: TfjsGraphOptions = {}): TfjsGraphArtifacts {
  const shardBytes = options.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!Number.isInteger(shardBytes) || shardBytes < 1) throw new InputError(`cannot export to a tfjs graph model: shardBytes must be a positive integer, got ${shardBytes}`, { code: 'E_EXPORT' });

  const { graphDef, constants } = buildGraphDefWithConstants(graph, options);
  const weights: ManifestWeight[] = [];
  const parts: Uint8Array[] = [];
  for (const c of constants) {
    const { entry, bytes } = encodeWeight(c);
    weights.push(entry);
    parts.push(bytes);
  }
  const shards = cut(concatBytes(parts), shardBytes);
  const paths = shards.map((_, i) => `group1-shard${i + 1}of${shards.length}.bin`);
  return {
    modelJson: {
      format: 'graph-model',
      // The converter puts the TensorFlow version the graph came from here; ours follows that release's op defs.
      generatedBy: TF_VERSION,
      convertedBy: 'tfjs-pipeline',
      signature: signatureFor(graph),
      modelTopology: graphDef,
      weightsManifest: [{ paths, weights }],
    },
    shards,
  };
}

/**
 * Writes `dir`/model.json and its weight shards (group1-shardNofM.bin). Returns the file names
 * written, relative to `dir`, model.json last: it is written after the shards it names.
 */
export async function writeTfjsGraphModel(graph: ExportGraph, dir: string, options: TfjsGraphOptions = {}): Promise<{ files: string[] }> {
  const { modelJson, shards } = tfjsGraphArtifacts(graph, options);
  const paths = modelJson.weightsManifest[0].paths;
  for (let i = 0; i < shards.length; i++) await writeFileSynced(join(dir, paths[i]), shards[i]);
  await writeFileSynced(join(dir, 'model.json'), JSON.stringify(modelJson));
  return { files: [...paths, 'model.json'] };
}

function encodeWeight(c: GraphConstant): { entry: ManifestWeight; bytes: Uint8Array } {
  const entry: ManifestWeight = { name: c.name, shape: c.shape, dtype: c.dtype };
  if (c.dtype === 'int32' || !c.quantization) return { entry, bytes: bytesOf(c.values) };
  const q = c.quantization;
  const values = c.values as Float32Array;
  if (q.dtype === 'float16') {
    entry.quantization = { dtype: 'float16', original_dtype: 'float32' };
    return { entry, bytes: bytesOf(float16Codes(c.name, values)) };
  }
  if (q.dtype !== 'uint8' && q.dtype !== 'uint16') {
    throw new InputError(`cannot export to a tfjs graph model: constant "${c.name}" has unsupported quantization dtype "${String(q.dtype)}"`, { code: 'E_EXPORT' });
  }
  if (typeof q.scale !== 'number' || typeof q.min !== 'number' || !(q.scale > 0) || !Number.isFinite(q.min)) {
    throw new InputError(`cannot export to a tfjs graph model: constant "${c.name}" has ${q.dtype} quantization without a positive scale and a finite min`, { code: 'E_EXPORT' });
  }
  entry.quantization = { dtype: q.dtype, scale: q.scale, min: q.min, original_dtype: 'float32' };
  return { entry, bytes: bytesOf(affineCodes(c.name, values, q.dtype, q.scale, q.min)) };
}

const f32 = new Float32Array(1);

/**
 * The stored codes behind dequantized values (tfjs loads value = code * scale + min, rounded to
 * float32). A value that no code reproduces means the ConstTensor's quantization does not
 * describe its values, and storing codes would change the model: that is an error.
 */
function affineCodes(name: string, values: Float32Array, dtype: 'uint8' | 'uint16', scale: number, min: number): Uint8Array | Uint16Array {
  const max = dtype === 'uint8' ? 255 : 65535;
  const codes = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    const code = Math.min(max, Math.max(0, Math.round((v - min) / scale)));
    f32[0] = code * scale + min;
    // A few float32 ulps of the terms: values dequantized in float32 arithmetic (rather than
    // tfjs's float64-then-round) differ by that much, and where scale is below the values' float32
    // resolution several codes give one value.
    if (!(Math.abs(f32[0] - v) <= (Math.abs(min) + code * scale) * 2 ** -21)) {
      throw new InputError(
        `cannot export to a tfjs graph model: constant "${name}" is marked ${dtype}-quantized (scale ${scale}, min ${min}) but value ${v} at index ${i} is no code * scale + min (nearest ${f32[0]}); drop its quantization to store float32`,
        { code: 'E_EXPORT' },
      );
    }
    codes[i] = code;
  }
  return codes;
}

function float16Codes(name: string, values: Float32Array): Uint16Array {
  const codes = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const bits = float32ToFloat16Bits(values[i]);
    const back = float16BitsToNumber(bits);
    if (back !== values[i] && !(Number.isNaN(back) && Number.isNaN(values[i]))) {
      throw new InputError(
        `cannot export to a tfjs graph model: constant "${name}" is marked float16 but value ${values[i]} at index ${i} is not a float16 value (nearest ${back}); drop its quantization to store float32`,
        { code: 'E_EXPORT' },
      );
    }
    codes[i] = bits;
  }
  return codes;
}

/** IEEE binary16 bits to their (exact) value. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** The little-endian bytes of a typed array (every platform Node and browsers run on is little-endian). */
function bytesOf(a: Float32Array | Int32Array | Uint8Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function cut(data: Uint8Array, size: number): Uint8Array[] {
  const shards: Uint8Array[] = [];
  for (let offset = 0; offset < data.byteLength; offset += size) shards.push(data.subarray(offset, Math.min(offset + size, data.byteLength)));
  return shards;
}
