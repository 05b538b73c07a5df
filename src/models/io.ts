import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { checkRegularFile, FileLimitError, readFileLimited, writeFileSynced } from '../util/fs.js';
import { checkTopology, MAX_PARAMETERS } from './topology.js';

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

/** Largest model.json read: the topology of a big model is a few hundred KB; the weights are in the shards. */
export const MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024;

/**
 * Reads a model.json and its shards, checking what a corrupt or hostile file could get wrong
 * before anything is allocated for it: the JSON's size and structure, every weight's shape and
 * dtype, the parameters declared against MAX_PARAMETERS, the topology against the manifest
 * (topology.ts), and the shards' sizes on disk against the manifest before they are read.
 */
export async function readModelArtifacts(modelJsonPath: string): Promise<tf.io.ModelArtifacts> {
  const json = await readModelJson(modelJsonPath);
  const fail = (message: string): never => {
    throw new InputError(`${modelJsonPath}: ${message}`);
  };
  if (!json.modelTopology || typeof json.modelTopology !== 'object') fail('not a tfjs layers model (no "modelTopology")');
  const groups = checkManifest(json.weightsManifest, modelJsonPath);
  const specs = groups.flatMap((g) => g.weights);
  const expected = specs.reduce((sum, s) => sum + weightBytes(s, modelJsonPath), 0);
  const parameters = specs.reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
  if (parameters > MAX_PARAMETERS) {
    fail(
      `the weights manifest declares ${parameters.toExponential(2)} weight values, over the limit of ` +
        `${MAX_PARAMETERS.toLocaleString('en-US')} parameters; refusing to load it`,
    );
  }
  const modelWeights = specs.filter((s) => (s as { group?: string }).group !== 'optimizer');
  checkTopology(json.modelTopology, modelWeights, modelJsonPath);

  const paths = groups.flatMap((g) => g.paths);
  let onDisk = 0;
  for (const path of paths) {
    try {
      onDisk += (await checkRegularFile(join(dirname(modelJsonPath), path))).size;
    } catch (err) {
      if (err instanceof FileLimitError) fail(`weight shard "${path}" is ${err.found}, not a file`);
      fail(`weight shard "${path}" is missing beside model.json`);
    }
  }
  // Sizes first: a manifest that promises a few bytes must not make us read a shard of gigabytes.
  if (expected !== onDisk) {
    fail(`the weights manifest describes ${expected} bytes but the shards hold ${onDisk}`);
  }
  const buffers: Uint8Array[] = [];
  for (const path of paths) {
    try {
      buffers.push(await readFile(join(dirname(modelJsonPath), path)));
    } catch {
      fail(`weight shard "${path}" is missing beside model.json`);
    }
  }
  const data = concatBytes(buffers);
  if (expected !== data.byteLength) {
    fail(`the weights manifest describes ${expected} bytes but the shards hold ${data.byteLength}`);
  }
  checkFinite(specs, data, modelJsonPath);
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

async function readModelJson(modelJsonPath: string): Promise<tf.io.ModelJSON> {
  let json: unknown;
  try {
    json = JSON.parse((await readFileLimited(modelJsonPath, MAX_MODEL_JSON_BYTES)).toString('utf8'));
  } catch (err) {
    const why =
      err instanceof FileLimitError
        ? err.reason === 'too-big'
          ? `it is ${Number(err.found).toLocaleString('en-US')} bytes, over the ${MAX_MODEL_JSON_BYTES.toLocaleString('en-US')}-byte limit for a model.json`
          : `it is ${err.found}, not a file`
        : (err as NodeJS.ErrnoException).code === 'ENOENT'
          ? 'file not found'
          : (err as Error).message;
    throw new InputError(`${modelJsonPath}: cannot read a tfjs model.json: ${why}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new InputError(`${modelJsonPath}: not a tfjs model.json (expected a JSON object with modelTopology and weightsManifest)`);
  }
  return json as tf.io.ModelJSON;
}

/** The manifest's groups, each path a plain file name and each weight a name, a shape and a dtype. */
function checkManifest(manifest: unknown, file: string): { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[] {
  const fail = (message: string): never => {
    throw new InputError(`${file}: ${message}`);
  };
  if (manifest === undefined) return [];
  if (!Array.isArray(manifest)) fail('weightsManifest is not a list of {paths, weights} groups');
  return (manifest as unknown[]).map((group, g) => {
    const { paths, weights } = (group ?? {}) as { paths?: unknown; weights?: unknown };
    if (!Array.isArray(paths) || paths.some((p) => typeof p !== 'string') || !Array.isArray(weights)) {
      fail(`weightsManifest[${g}] is not a {paths: [file names], weights: [entries]} group`);
    }
    for (const path of paths as string[]) {
      if (path === '' || basename(path) !== path || path === '.' || path === '..') {
        fail(`weight file ${JSON.stringify(path)} must sit beside model.json (no folders)`);
      }
    }
    for (const [i, w] of (weights as unknown[]).entries()) {
      const entry = (w ?? {}) as { name?: unknown; shape?: unknown; dtype?: unknown };
      if (typeof entry.name !== 'string' || typeof entry.dtype !== 'string' || !Array.isArray(entry.shape)) {
        fail(`weightsManifest[${g}].weights[${i}] is not a {name, shape, dtype} entry`);
      }
    }
    return { paths: paths as string[], weights: weights as tf.io.WeightsManifestEntry[] };
  });
}

/**
 * A tfjs graph model in tf.io.fromMemory's form, from its parsed model.json and the bytes of the
 * shards it names, in manifest order. Callers read (or verify) the bytes themselves.
 */
export function graphModelArtifacts(json: tf.io.ModelJSON, shards: Uint8Array[]): tf.io.ModelArtifacts {
  const data = concatBytes(shards);
  return {
    modelTopology: json.modelTopology,
    weightSpecs: (json.weightsManifest ?? []).flatMap((g) => g.weights),
    weightData: data.buffer as ArrayBuffer,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    modelInitializer: json.modelInitializer,
  };
}

/** A tfjs graph model.json and its shards (beside it), read for tf.loadGraphModel(tf.io.fromMemory(...)). */
export async function readGraphModelArtifacts(modelJsonPath: string): Promise<tf.io.ModelArtifacts> {
  const json = JSON.parse(await readFile(modelJsonPath, 'utf8')) as tf.io.ModelJSON;
  if (json.format !== 'graph-model') throw new InputError(`${modelJsonPath}: format is "${json.format}", expected "graph-model"`);
  const paths = (json.weightsManifest ?? []).flatMap((g) => g.paths);
  const shards = await Promise.all(paths.map((p) => readFile(join(dirname(modelJsonPath), basename(p)))));
  return graphModelArtifacts(json, shards);
}

/** model.json and the weight shards it names: what a model read from a path consists of. */
export async function modelFiles(modelJsonPath: string): Promise<string[]> {
  let shards: string[] = [];
  try {
    const json = await readModelJson(modelJsonPath);
    shards = (json.weightsManifest ?? []).flatMap((group) => group.paths).map((p) => join(dirname(modelJsonPath), basename(String(p))));
  } catch {
    // Unreadable: the stage reports it with a clear error when it loads the model.
  }
  // These files are hashed for the fingerprint; a device or pipe among them would be read forever.
  for (const path of [modelJsonPath, ...shards]) {
    try {
      await checkRegularFile(path);
    } catch (err) {
      if (err instanceof FileLimitError) throw new InputError(`${path}: expected a tfjs model file, found ${err.found}`);
    }
  }
  return [modelJsonPath, ...shards];
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

/**
 * Refuses float32 weights holding NaN or infinity: tfjs loads them silently, and training from them
 * fails later as "diverged", which points at the learning rate instead of the file.
 */
function checkFinite(specs: tf.io.WeightsManifestEntry[], data: Uint8Array, file: string): void {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let offset = 0;
  for (const spec of specs) {
    const bytes = weightBytes(spec, file);
    if (spec.dtype === 'float32' && !spec.quantization) {
      for (let i = 0; i < bytes; i += 4) {
        const v = view.getFloat32(offset + i, true);
        if (!Number.isFinite(v)) {
          throw new InputError(
            `${file}: weight "${spec.name}" holds ${v} at element ${i / 4}; the weights are corrupt, or were saved from a model ` +
              'whose training diverged: export them again from a good checkpoint',
          );
        }
      }
    }
    offset += bytes;
  }
}

/** The parts one after another in a new buffer (weight shards -> one weight blob). */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}
