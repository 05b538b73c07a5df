import * as tf from '@tensorflow/tfjs';
import { readModelArtifacts } from '../models/io.js';

// What the report needs from a stored model, computed in Node from model.json and its shards: a
// Keras-style summary, the weights' sizes, and histograms of weights before and after a compression
// stage. The page only draws; bins are made here so a model's millions of weights never reach it.

export interface LayerSummary {
  name: string;
  type: string;
  outputShape: string;
  params: number;
}

export interface ModelSummary {
  layers: LayerSummary[];
  parameters: number;
  trainable: number;
}

export interface StoredModel {
  summary: ModelSummary;
  /** The weight shards' bytes, concatenated as stored. */
  weightData: Uint8Array;
  /** Every weight, dequantized as tfjs loads it, by manifest name ("dense_Dense1/kernel"). */
  weights: Map<string, Float32Array>;
}

/**
 * The report may run in a process where no stage ran (a fully cached run, `pipeline report`), so
 * no backend was chosen; tfjs would then try webgl first and print its install-tfjs-node banner.
 */
async function ensureBackend(): Promise<void> {
  if (tf.engine().backendName) return;
  tf.env().set('PROD', true);
  await tf.setBackend('cpu');
}

export async function readStoredModel(modelJsonPath: string): Promise<StoredModel> {
  await ensureBackend();
  const artifacts = await readModelArtifacts(modelJsonPath);
  // The same decoder stock loaders run: quantized entries come back as the float32 a user gets.
  const named = tf.io.decodeWeights(artifacts.weightData!, artifacts.weightSpecs!);
  const weights = new Map<string, Float32Array>();
  try {
    for (const [name, tensor] of Object.entries(named)) weights.set(name, Float32Array.from(await tensor.data()));
  } finally {
    tf.dispose(Object.values(named));
  }
  return { summary: await summarize(artifacts), weightData: new Uint8Array(artifacts.weightData as ArrayBuffer), weights };
}

/** Layers, output shapes and parameter counts, as Keras's model.summary() prints them. */
async function summarize(artifacts: tf.io.ModelArtifacts): Promise<ModelSummary> {
  // With weights supplied, tfjs skips the initializers: loading draws no random numbers.
  const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
  try {
    const layers = model.layers.map((layer) => ({
      name: layer.name,
      type: layer.getClassName(),
      outputShape: formatShape(layer.outputShape),
      params: layer.countParams(),
    }));
    const count = (weights: tf.LayerVariable[]) => weights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 0), 1), 0);
    return { layers, parameters: count(model.weights), trainable: count(model.trainableWeights) };
  } finally {
    model.dispose();
  }
}

function formatShape(shape: tf.Shape | tf.Shape[]): string {
  const one = (s: tf.Shape) => `(${s.map((d) => (d === null ? 'None' : String(d))).join(', ')})`;
  return Array.isArray(shape[0]) ? (shape as tf.Shape[]).map(one).join(', ') : one(shape as tf.Shape);
}

export interface HistogramSide {
  /** Non-zero weights per bin. */
  counts: number[];
  /** Exact zeros, kept out of the bins: pruning makes them a spike that would flatten the rest. */
  zeros: number;
  elements: number;
  min: number;
  max: number;
}

export interface WeightHistogram {
  weight: string;
  shape: number[];
  /** Left edge of the first bin and the bin width, shared by both sides so they compare. */
  start: number;
  width: number;
  before: HistogramSide;
  after: HistogramSide;
}

export function weightHistogram(weight: string, shape: number[], before: Float32Array, after: Float32Array, bins = 40): WeightHistogram {
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of [before, after]) {
    for (const v of values) {
      if (v === 0 || !Number.isFinite(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (lo === Infinity) [lo, hi] = [-1, 1];
  if (lo === hi) [lo, hi] = [lo - 0.5, hi + 0.5];
  const width = (hi - lo) / bins;
  const side = (values: Float32Array): HistogramSide => {
    const counts = new Array<number>(bins).fill(0);
    let zeros = 0;
    let min = Infinity;
    let max = -Infinity;
    for (const v of values) {
      if (v < min) min = v;
      if (v > max) max = v;
      if (v === 0) zeros++;
      else if (Number.isFinite(v)) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
    }
    return { counts, zeros, elements: values.length, min: values.length ? min : 0, max: values.length ? max : 0 };
  };
  return { weight, shape, start: lo, width, before: side(before), after: side(after) };
}
