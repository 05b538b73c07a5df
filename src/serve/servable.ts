import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { MANIFEST_FILE } from '../artifacts/manifest.js';
import { graphModelArtifacts } from '../models/io.js';
import { sha256, sha256File } from '../util/hash.js';
import { Batcher, DEFAULT_BATCHING, type BatchOptions, type BatchResult } from './batcher.js';
import { ServeError } from './status.js';
import type { OutputTensor, PredictInput, ServingSignature, TensorInfo } from './tensor-json.js';

// One loaded model version: its files checked against manifest.json, its tfjs-graph model built
// by stock tf.loadGraphModel from the very bytes that were hashed (no second read that a writer
// could race), a warm-up prediction, and predict() through the batcher (merging requests when
// batching is on).

export const GRAPH_MODEL = 'tfjs-graph/model.json';
const CARD_FILE = 'model-card.json';
const SHA256 = /^[0-9a-f]{64}$/;
/** Batching off: one request per model run. */
const UNBATCHED = { maxBatchSize: 1, batchTimeoutMicros: 0 };

export interface ModelCardFacts {
  labels?: string[];
  preprocessing?: unknown;
}

export interface LoadOptions {
  batching?: BatchOptions;
  /** Called once per model execution: rows, requests merged, seconds. */
  onExecute?: (rows: number, requests: number, seconds: number) => void;
}

interface ManifestFiles {
  files: Record<string, { sha256: string; bytes: number }>;
}

export class Servable {
  private readonly batcher: Batcher | undefined;
  private readonly exampleShape: number[];

  constructor(
    readonly model: string,
    readonly version: number,
    readonly dir: string,
    readonly signature: ServingSignature,
    readonly card: ModelCardFacts,
    private readonly graph: tf.GraphModel,
    private readonly options: LoadOptions,
  ) {
    this.exampleShape = signature.inputs[0].shape.slice(1);
    // Examples of a shape with free dimensions may differ between requests and cannot be stacked.
    const stackable = this.exampleShape.every((d) => d > 0);
    const exampleSize = this.exampleShape.reduce((a, b) => a * b, 1);
    // Without batching, requests still queue and run one at a time between event-loop turns:
    // running a model inside a socket's callback would hold the poll phase for every ready
    // socket in turn, and Node accepts new connections only between poll phases.
    const queue = options.batching ?? { ...UNBATCHED, maxEnqueuedBatches: DEFAULT_BATCHING.maxBatchSize * DEFAULT_BATCHING.maxEnqueuedBatches };
    this.batcher = stackable
      ? new Batcher((values, rows, requests) => this.execute(values, rows, this.exampleShape, requests), exampleSize, queue, this.where)
      : undefined;
  }

  get where(): string {
    return `model "${this.model}" version ${this.version}`;
  }

  async predict(input: PredictInput, deadline = Infinity): Promise<OutputTensor[]> {
    const out: BatchResult = this.batcher
      ? await this.batcher.submit(input.values, input.rows, deadline)
      : await this.execute(input.values, input.rows, input.exampleShape, 1);
    return [{ key: this.signature.outputs[0].key, shape: out.shape, values: out.values }];
  }

  /** One model run; awaits the output's download so the event loop is free while a GPU works. */
  private async execute(values: Float32Array, rows: number, exampleShape: number[], requests: number): Promise<BatchResult> {
    const started = performance.now();
    const x = tf.tensor(values, [rows, ...exampleShape], 'float32');
    let y: tf.Tensor | undefined;
    try {
      y = this.graph.predict(x) as tf.Tensor;
      const data = (await y.data()) as Float32Array;
      return { shape: y.shape, values: data };
    } finally {
      x.dispose();
      y?.dispose();
      if (requests > 0) this.options.onExecute?.(rows, requests, (performance.now() - started) / 1000);
    }
  }

  /** One unrecorded prediction on zeros; returns the output's shape. */
  async warmUp(): Promise<number[]> {
    const example = this.exampleShape.map((d) => (d > 0 ? d : 1));
    const out = await this.execute(new Float32Array(example.reduce((a, b) => a * b, 1)), 1, example, 0);
    return out.shape;
  }

  dispose(): void {
    this.graph.dispose();
  }
}

/**
 * Verifies every file of a version against its manifest.json and loads its tfjs-graph model.
 * Throws a ServeError whose code and message become the version's END status.
 */
export async function loadServable(model: string, version: number, dir: string, options: LoadOptions = {}): Promise<Servable> {
  // Messages become the version's status, which clients read: no server paths in them.
  const where = `model "${model}" version ${version}`;
  const manifest = await readManifest(dir, where);
  if (!manifest.files[GRAPH_MODEL]) {
    throw new ServeError(
      'FAILED_PRECONDITION',
      `${where} has no ${GRAPH_MODEL} in manifest.json: it was exported without the tfjs-graph format, which this server runs. ` +
        'Export it with formats including tfjs-graph.',
    );
  }
  // Sizes first: a copy in progress (or a file that is not what the manifest says) is caught
  // without reading anything.
  for (const [file, digest] of Object.entries(manifest.files)) {
    const size = await stat(join(dir, file)).then((s) => (s.isFile() ? s.size : undefined), () => undefined);
    if (size === undefined) throw missing(where, file);
    if (size !== digest.bytes) checkDigest(where, file, { sha256: '(not read)', bytes: size }, digest);
  }
  // The files the model is built from are kept in memory as hashed; the rest are streamed.
  const kept = new Map<string, Buffer>();
  for (const [file, digest] of Object.entries(manifest.files)) {
    const path = join(dir, file);
    if (file.startsWith('tfjs-graph/') || file === CARD_FILE) {
      const bytes = await readFile(path).catch(() => undefined);
      if (!bytes) throw missing(where, file);
      checkDigest(where, file, { sha256: sha256(bytes), bytes: bytes.byteLength }, digest);
      kept.set(file, bytes);
    } else {
      checkDigest(where, file, await sha256File(path).catch(() => ({ sha256: '(unreadable)', bytes: -1 })), digest);
    }
  }

  let json: tf.io.ModelJSON & { signature?: TfSignature };
  try {
    json = JSON.parse(kept.get(GRAPH_MODEL)!.toString('utf8'));
  } catch (err) {
    throw new ServeError('DATA_LOSS', `${where}: ${GRAPH_MODEL} is not valid JSON: ${(err as Error).message}`);
  }
  const signature = parseSignature(json.signature, where);
  const shards: Buffer[] = [];
  for (const group of json.weightsManifest ?? []) {
    for (const p of group.paths) {
      const file = `tfjs-graph/${p}`;
      if (basename(p) !== p || !kept.has(file)) {
        throw new ServeError('DATA_LOSS', `${where}: ${GRAPH_MODEL} names weight file "${p}", which manifest.json does not list: the version is incomplete`);
      }
      shards.push(kept.get(file)!);
    }
  }

  let graph: tf.GraphModel;
  try {
    graph = await tf.loadGraphModel(tf.io.fromMemory(graphModelArtifacts(json, shards)));
  } catch (err) {
    throw new ServeError('UNKNOWN', `${where}: tf.loadGraphModel could not build ${GRAPH_MODEL}: ${(err as Error).message}`);
  }

  const card = readCard(kept.get(CARD_FILE));
  const servable = new Servable(model, version, dir, signature, card, graph, options);
  await warmUp(servable, signature, where).catch((err) => {
    servable.dispose();
    throw err;
  });
  return servable;
}

function missing(where: string, file: string): ServeError {
  return new ServeError(
    'DATA_LOSS',
    `${where}: ${file} is listed in manifest.json but missing; the version is incomplete. ` +
      'Publish a version by writing it to a temporary folder and renaming that into place (pipeline run does).',
  );
}

function checkDigest(where: string, file: string, got: { sha256: string; bytes: number }, want: { sha256: string; bytes: number }): void {
  if (got.bytes !== want.bytes || got.sha256 !== want.sha256) {
    const what = got.bytes !== want.bytes ? `${got.bytes} bytes instead of ${want.bytes}` : `sha256 ${got.sha256.slice(0, 12)}... instead of ${want.sha256.slice(0, 12)}...`;
    throw new ServeError(
      'DATA_LOSS',
      `${where}: ${file} does not match manifest.json (${what}); the version is corrupt or still being written and is not served. ` +
        'Publish a version by writing it to a temporary folder and renaming that into place (pipeline run does).',
    );
  }
}

async function readManifest(dir: string, where: string): Promise<ManifestFiles> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch {
    throw new ServeError('DATA_LOSS', `${where}: ${MANIFEST_FILE} disappeared while loading`);
  }
  let manifest: ManifestFiles;
  try {
    manifest = JSON.parse(text) as ManifestFiles;
  } catch (err) {
    throw new ServeError('DATA_LOSS', `${where}: ${MANIFEST_FILE} is not valid JSON (${(err as Error).message}); a partial write?`);
  }
  if (!manifest || typeof manifest.files !== 'object' || manifest.files === null) {
    throw new ServeError('DATA_LOSS', `${where}: ${MANIFEST_FILE} has no "files" object with the sha256 of every file`);
  }
  for (const [file, digest] of Object.entries(manifest.files)) {
    // A manifest names files inside its own version; anything else is not ours to read.
    const segments = file.split('/');
    if (file.startsWith('/') || file.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
      throw new ServeError('DATA_LOSS', `${where}: ${MANIFEST_FILE} lists "${file}", which is not a path inside the version`);
    }
    if (!digest || typeof digest.sha256 !== 'string' || !SHA256.test(digest.sha256) || !Number.isSafeInteger(digest.bytes) || digest.bytes < 0) {
      throw new ServeError('DATA_LOSS', `${where}: ${MANIFEST_FILE} entry "${file}" needs {"sha256": <64 hex digits>, "bytes": <size>}`);
    }
  }
  return manifest;
}

interface TfTensorInfo {
  name?: string;
  dtype?: string;
  tensorShape?: { dim?: { size?: string | number }[]; unknownRank?: boolean };
}
interface TfSignature {
  inputs?: Record<string, TfTensorInfo>;
  outputs?: Record<string, TfTensorInfo>;
  methodName?: string;
}

/** The serving_default signature tfjs-graph/model.json carries (our exporter writes one). */
function parseSignature(sig: TfSignature | undefined, where: string): ServingSignature {
  const tensors = (map: Record<string, TfTensorInfo> | undefined, kind: string): TensorInfo[] =>
    Object.entries(map ?? {}).map(([key, info]) => {
      if (info.dtype !== 'DT_FLOAT') {
        throw new ServeError('FAILED_PRECONDITION', `${where}: ${kind} "${key}" has dtype ${info.dtype}; this server serves float32 inputs and outputs`);
      }
      if (info.tensorShape?.unknownRank || !info.tensorShape?.dim?.length) {
        throw new ServeError('FAILED_PRECONDITION', `${where}: ${kind} "${key}" has no known shape in ${GRAPH_MODEL}'s signature`);
      }
      return { key, tensorName: info.name ?? `${key}:0`, dtype: 'float32', shape: info.tensorShape.dim.map((d) => Number(d.size ?? -1)) };
    });
  const inputs = tensors(sig?.inputs, 'input');
  const outputs = tensors(sig?.outputs, 'output');
  if (inputs.length !== 1 || outputs.length !== 1) {
    throw new ServeError(
      'FAILED_PRECONDITION',
      `${where}: ${GRAPH_MODEL}'s signature has ${inputs.length} inputs and ${outputs.length} outputs; this server serves models with one of each ` +
        '(as the export stage writes them)',
    );
  }
  return { name: 'serving_default', methodName: sig?.methodName ?? 'tensorflow/serving/predict', inputs, outputs };
}

function readCard(bytes: Buffer | undefined): ModelCardFacts {
  if (!bytes) return {};
  try {
    const card = JSON.parse(bytes.toString('utf8')) as ModelCardFacts;
    return { labels: Array.isArray(card.labels) ? card.labels.map(String) : undefined, preprocessing: card.preprocessing };
  } catch {
    return {};
  }
}

/** A prediction before the version is AVAILABLE: the first client does not pay for kernel setup, and a model that cannot run is never served. */
async function warmUp(servable: Servable, signature: ServingSignature, where: string): Promise<void> {
  let got: number[];
  try {
    got = await servable.warmUp();
  } catch (err) {
    throw new ServeError('UNKNOWN', `${where}: the warm-up prediction failed: ${(err as Error).message}`);
  }
  const want = signature.outputs[0].shape;
  if (got.length !== want.length || !got.every((d, i) => i === 0 || want[i] === -1 || want[i] === d)) {
    throw new ServeError('FAILED_PRECONDITION', `${where}: the model outputs shape [${got}] where its signature says [${want}]`);
  }
}
