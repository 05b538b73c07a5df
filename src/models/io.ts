import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { writeFileSynced } from '../util/fs.js';

// A file-system IOHandler of our own: tfjs's is in tfjs-node, which cannot be installed here.
// The files are the standard tfjs layers format (model.json + binary shards), so
// tf.loadLayersModel('file://...') in tfjs-node or an http loader in a browser reads them as is.

export const MODEL_JSON = 'model.json';
export const DEFAULT_SHARD_BYTES = 4 * 1024 * 1024;

export interface SavedModelFiles {
  modelJson: string;
  shards: string[];
  weightBytes: number;
}

/**
 * Rewrites the weights on their way to disk: gets tfjs's float specs and bytes, returns the specs
 * and bytes to write. Weight quantization uses it, so model.json keeps a single writer.
 */
export type WeightsEncoder = (
  specs: tf.io.WeightsManifestEntry[],
  data: Uint8Array,
) => { specs: tf.io.WeightsManifestEntry[]; data: Uint8Array };

export interface SaveOptions {
  shardBytes?: number;
  userDefinedMetadata?: Record<string, unknown>;
  encodeWeights?: WeightsEncoder;
}

/** Writes `model` as model.json plus weight shards of at most `shardBytes` into `dir`. */
export async function saveLayersModel(model: tf.LayersModel, dir: string, options: SaveOptions = {}): Promise<SavedModelFiles> {
  const shardBytes = options.shardBytes ?? DEFAULT_SHARD_BYTES;
  let files: SavedModelFiles | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const float = {
        specs: artifacts.weightSpecs ?? [],
        data: new Uint8Array((artifacts.weightData as ArrayBuffer | undefined) ?? new ArrayBuffer(0)),
      };
      const { specs, data } = options.encodeWeights ? options.encodeWeights(float.specs, float.data) : float;
      files = await writeLayersModelFiles(dir, { ...artifacts, weightSpecs: specs }, data, { ...options, shardBytes });
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  return files!;
}

/** Writes a layers model's topology and (already encoded) weight bytes as model.json plus shards. */
export async function writeLayersModelFiles(
  dir: string,
  artifacts: Pick<tf.io.ModelArtifacts, 'modelTopology' | 'weightSpecs' | 'generatedBy'>,
  data: Uint8Array,
  options: Pick<SaveOptions, 'shardBytes' | 'userDefinedMetadata'> = {},
): Promise<SavedModelFiles> {
  const shardBytes = options.shardBytes ?? DEFAULT_SHARD_BYTES;
  const count = Math.max(1, Math.ceil(data.byteLength / shardBytes));
  const shards: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `group1-shard${i + 1}of${count}.bin`;
    await writeFileSynced(join(dir, name), data.subarray(i * shardBytes, (i + 1) * shardBytes));
    shards.push(name);
  }
  const modelJson: tf.io.ModelJSON = {
    modelTopology: artifacts.modelTopology as tf.io.ModelJSON['modelTopology'],
    format: 'layers-model',
    generatedBy: artifacts.generatedBy,
    convertedBy: 'tfjs-pipeline',
    weightsManifest: [{ paths: shards, weights: artifacts.weightSpecs ?? [] }],
    ...(options.userDefinedMetadata ? { userDefinedMetadata: options.userDefinedMetadata as tf.io.ModelJSON['userDefinedMetadata'] } : {}),
  };
  await writeFileSynced(join(dir, MODEL_JSON), JSON.stringify(modelJson));
  return { modelJson: MODEL_JSON, shards, weightBytes: data.byteLength };
}

/** Reads a model.json and its shards, checking what a corrupt or hostile file could get wrong. */
export async function readModelArtifacts(modelJsonPath: string): Promise<tf.io.ModelArtifacts> {
  let json: tf.io.ModelJSON;
  try {
    json = JSON.parse(await readFile(modelJsonPath, 'utf8')) as tf.io.ModelJSON;
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new InputError(`${modelJsonPath}: cannot read a tfjs model.json: ${why}`);
  }
  if (!json || typeof json !== 'object' || !json.modelTopology) {
    throw new InputError(`${modelJsonPath}: not a tfjs layers model (no "modelTopology")`);
  }
  const specs: tf.io.WeightsManifestEntry[] = [];
  const buffers: Uint8Array[] = [];
  for (const group of json.weightsManifest ?? []) {
    for (const path of group.paths) {
      if (basename(path) !== path) {
        throw new InputError(`${modelJsonPath}: weight file "${path}" must sit beside model.json (no folders)`);
      }
      try {
        buffers.push(await readFile(join(dirname(modelJsonPath), path)));
      } catch {
        throw new InputError(`${modelJsonPath}: weight shard "${path}" is missing beside model.json`);
      }
    }
    specs.push(...group.weights);
  }
  const data = concat(buffers);
  const expected = specs.reduce((sum, s) => sum + weightBytes(s, modelJsonPath), 0);
  if (expected !== data.byteLength) {
    throw new InputError(
      `${modelJsonPath}: the weights manifest describes ${expected} bytes but the shards hold ${data.byteLength}`,
    );
  }
  return {
    modelTopology: json.modelTopology,
    weightSpecs: specs,
    weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    userDefinedMetadata: json.userDefinedMetadata,
  };
}

/** model.json and the weight shards it names: what a model read from a path consists of. */
export async function modelFiles(modelJsonPath: string): Promise<string[]> {
  try {
    const json = JSON.parse(await readFile(modelJsonPath, 'utf8')) as tf.io.ModelJSON;
    const shards = (json.weightsManifest ?? []).flatMap((group) => group.paths);
    return [modelJsonPath, ...shards.map((p) => join(dirname(modelJsonPath), basename(p)))];
  } catch {
    // Unreadable: the stage reports it with a clear error when it loads the model.
    return [modelJsonPath];
  }
}

export async function loadLayersModelFrom(modelJsonPath: string): Promise<tf.LayersModel> {
  const artifacts = await readModelArtifacts(modelJsonPath);
  try {
    return await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  } catch (err) {
    throw new InputError(`${modelJsonPath}: tfjs could not build the model: ${(err as Error).message}`);
  }
}

const BYTES_PER_VALUE: Record<string, number> = { float32: 4, int32: 4, bool: 1, uint8: 1, uint16: 2, float16: 2 };

function weightBytes(spec: tf.io.WeightsManifestEntry, file: string): number {
  const count = spec.shape.reduce((a, b) => a * b, 1);
  if (!spec.shape.every((d) => Number.isSafeInteger(d) && d >= 0) || !Number.isSafeInteger(count)) {
    throw new InputError(`${file}: weight "${spec.name}" has an invalid shape [${spec.shape.join(', ')}]`);
  }
  const dtype = spec.quantization?.dtype ?? spec.dtype;
  const bytes = BYTES_PER_VALUE[dtype];
  if (bytes === undefined) throw new InputError(`${file}: weight "${spec.name}" has unsupported dtype "${dtype}"`);
  const q = spec.quantization;
  // tfjs would dequantize a missing scale or min to NaN weights without a word.
  if (q && q.dtype !== 'float16' && !(Number.isFinite(q.scale) && Number.isFinite(q.min))) {
    throw new InputError(`${file}: weight "${spec.name}" is quantized to ${q.dtype} without a finite "scale" and "min"`);
  }
  return count * bytes;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}
