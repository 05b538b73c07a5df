import { mkdir, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { publishServingVersion, SERVING_DIR } from '../artifacts/serving.js';
import { EXIT_STAGE_FAILED, PipelineError } from '../errors.js';
import { lowerLayersModel, quantizationByWeight } from '../export/lower.js';
import type { ExportGraph } from '../export/graph-ir.js';
import { writeOnnxModel } from '../export/onnx.js';
import { writeSavedModel } from '../export/saved-model.js';
import { tfjsGraphArtifacts, writeTfjsGraphModel } from '../export/tfjs-graph.js';
import { DEFAULT_SHARD_BYTES, graphModelArtifacts, MODEL_JSON, readModelArtifacts, writeLayersModelFiles } from '../models/io.js';
import { parseLossSpec } from '../models/losses.js';
import { evaluateClassifier, predictSplit, type ClassificationMetrics } from '../train/metrics.js';
import { listFilesRecursive, writeFileSynced } from '../util/fs.js';
import { TOOL_VERSION } from '../version.js';
import { modelInput, type InputSpec } from './model-output.js';
import type { StageKind } from './types.js';

// `uses: export`: what a serving team loads unchanged, in TensorFlow Serving's layout. The stage's
// stored version holds every format side by side (saved_model.pb + variables/, tfjs-layers/,
// tfjs-graph/, onnx/model.onnx, model-card.json); publishing then copies it to
// <base>/<modelName>/<N>/. A gate on the test metrics (TFX's "blessing") runs before anything is
// written: a model that misses it is not exported and the run fails.

export const EXPORT_FORMATS = ['tfjs-layers', 'tfjs-graph', 'saved-model', 'onnx'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export const MODEL_CARD_FILE = 'model-card.json';

const GATE_METRICS = { accuracy: 'min', macroF1: 'min', loss: 'max' } as const;
type GateMetric = keyof typeof GATE_METRICS;
type Bound = number | { min?: number; max?: number };

export interface ExportOptions extends Record<string, unknown> {
  from: string;
  data: string;
  formats: ExportFormat[];
  modelName: string;
  gate: Partial<Record<GateMetric, Bound>>;
  probabilities: boolean;
  base: string;
  shardBytes: number;
}

/** Where each format lives inside a version (TF Serving wants saved_model.pb at the top). */
const FORMAT_PATHS: Record<ExportFormat, string> = {
  'tfjs-layers': 'tfjs-layers/model.json',
  'tfjs-graph': 'tfjs-graph/model.json',
  'saved-model': 'saved_model.pb',
  onnx: 'onnx/model.onnx',
};

/** Predictions of an exported format may differ from the source model's by float rounding only. */
const CHECK_TOLERANCE = 1e-4;
const CHECK_SAMPLES = 1000;

export class GateError extends PipelineError {
  constructor(message: string) {
    super('E_GATE', message, EXIT_STAGE_FAILED);
    this.name = 'GateError';
  }
}

const bound: Record<string, unknown> = {
  oneOf: [
    { type: 'number', description: 'accuracy/macroF1: the minimum; loss: the maximum' },
    {
      type: 'object',
      properties: { min: { type: 'number' }, max: { type: 'number' } },
      additionalProperties: false,
      minProperties: 1,
    },
  ],
};

export const exportStage: StageKind<ExportOptions> = {
  kind: 'export',
  description: "write a stage's model as tfjs layers/graph models, a SavedModel and ONNX, in TensorFlow Serving's layout",
  options: {
    from: { type: 'string', description: 'the stage whose model to export' },
    data: { type: 'string', description: "data set for the model card's metrics and the gate (default: the one the model was trained on)" },
    formats: {
      type: 'array',
      items: { enum: [...EXPORT_FORMATS] },
      minItems: 1,
      uniqueItems: true,
      default: [...EXPORT_FORMATS],
      description: 'formats to write (default: all)',
    },
    modelName: {
      type: 'string',
      // The store's assertSafeName refuses ".." too, but only at publish time, after the stage ran.
      pattern: '^(?!.*\\.\\.)[A-Za-z0-9][A-Za-z0-9_.-]*$',
      errorMessage: 'a name of letters, digits, "_", "-" and "." without ".." (it names a folder under base)',
      description: "the served model's name: <base>/<modelName>/<version>/ (default: the pipeline's name)",
    },
    gate: {
      type: 'object',
      properties: Object.fromEntries(Object.keys(GATE_METRICS).map((m) => [m, bound])),
      additionalProperties: false,
      description: 'test-split thresholds the model must meet to be exported, e.g. {accuracy: 0.9, loss: {max: 0.4}}',
    },
    probabilities: {
      type: 'boolean',
      default: true,
      description: 'serve probabilities: a model that outputs logits gets a softmax appended in every format',
    },
    base: {
      type: 'string',
      description: `TensorFlow Serving base folder, relative to the pipeline file (default: <store>/${SERVING_DIR})`,
    },
    // Far lower and a large model becomes hundreds of thousands of files.
    shardBytes: { type: 'integer', minimum: 65536, default: DEFAULT_SHARD_BYTES, description: 'largest weight shard (default 4 MiB, at least 64 KiB)' },
  },
  required: ['from'],
  resolve: (o, ctx) => ({
    from: o.from,
    data: o.data ?? ctx.dataOf(o.from) ?? '',
    formats: o.formats ?? [...EXPORT_FORMATS],
    modelName: o.modelName ?? ctx.pipeline,
    gate: o.gate ?? {},
    probabilities: o.probabilities ?? true,
    base: o.base ?? '',
    shardBytes: o.shardBytes ?? DEFAULT_SHARD_BYTES,
  }),
  inputs: (o) => ({ stages: [o.from], data: o.data ? [o.data] : [] }),

  async run(ctx, o) {
    const where = `stages.${ctx.stage}`;
    const { input, spec, dataset } = await modelInput(ctx, o.from, o.data);
    const sourceJson = join(input.version.dir, MODEL_JSON);
    const source = await readModelArtifacts(sourceJson);
    const model = await input.loadModel();
    try {
      const test = await evaluateClassifier(
        model, dataset.test, dataset.featureShape, dataset.classes, parseLossSpec(undefined), spec.outputIsProbabilities,
      );
      const gate = checkGate(o.gate, test, where);
      ctx.observer.info(
        `test accuracy ${test.accuracy.toFixed(4)}, loss ${test.loss.toFixed(4)}` +
          (gate.length ? `; gate passed (${gate.map((g) => g.rule).join(', ')})` : ''),
      );

      const appendSoftmax = o.probabilities && !spec.outputIsProbabilities;
      const outputName = appendSoftmax || spec.outputIsProbabilities ? 'probabilities' : 'logits';
      const graphFormats = o.formats.filter((f) => f !== 'tfjs-layers');
      const graph = graphFormats.length
        ? await lowerLayersModel(model, {
            formats: graphFormats,
            quantization: quantizationByWeight(source.weightSpecs ?? []),
            appendSoftmax,
            inputName: 'input',
            outputName,
          })
        : undefined;

      for (const format of o.formats) {
        if (format === 'tfjs-layers') await writeTfjsLayers(source, join(ctx.outDir, 'tfjs-layers'), appendSoftmax, o.shardBytes);
        if (format === 'tfjs-graph') await writeTfjsGraphModel(graph!, join(ctx.outDir, 'tfjs-graph'), { shardBytes: o.shardBytes });
        if (format === 'saved-model') await writeSavedModel(graph!, ctx.outDir);
        if (format === 'onnx') {
          await mkdir(join(ctx.outDir, 'onnx'), { recursive: true });
          await writeFileSynced(join(ctx.outDir, 'onnx', 'model.onnx'), writeOnnxModel(graph!, { producerVersion: TOOL_VERSION }));
        }
      }

      const checks = await checkTfjsFormats(ctx.outDir, o.formats, graph, model, dataset.test, spec, appendSoftmax);
      for (const [format, c] of Object.entries(checks)) {
        if (!(c.maxAbsDiff <= CHECK_TOLERANCE)) {
          throw new Error(
            `the exported ${format} model predicts differently from "${o.from}" (max abs difference ${c.maxAbsDiff} on ` +
              `${c.samples} test samples, tolerance ${CHECK_TOLERANCE}): this is a bug in the exporter, please report it`,
          );
        }
      }
      const sizes: Record<string, number> = {};
      for (const format of o.formats) sizes[format] = await formatBytes(ctx.outDir, format);

      const card = modelCard({ o, spec, dataset, test, gate, graph, model, input, outputName, sizes });
      await writeFileSynced(join(ctx.outDir, MODEL_CARD_FILE), `${JSON.stringify(card, null, 2)}\n`);
      ctx.observer.info(
        `exported ${o.formats.map((f) => `${f} (${sizes[f].toLocaleString('en-US')} bytes)`).join(', ')}` +
          (Object.keys(checks).length
            ? `; max |difference| from "${o.from}" on ${Object.values(checks)[0].samples} test samples: ` +
              Object.entries(checks).map(([f, c]) => `${f} ${c.maxAbsDiff.toExponential(1)}`).join(', ')
            : ''),
      );
      return {
        metrics: { test, gate, checks, sizes, formats: o.formats, modelName: o.modelName },
        headline: { test_accuracy: test.accuracy, test_loss: test.loss, ...Object.fromEntries(o.formats.map((f) => [`${f}_bytes`, sizes[f]])) },
      };
    } finally {
      model.dispose();
    }
  },

  async publish(version, o, ctx) {
    const base = o.base ? resolve(ctx.baseDir, o.base) : join(ctx.storeRoot, SERVING_DIR);
    const served = await publishServingVersion(base, o.modelName, version);
    const shown = relative(process.cwd(), served.dir);
    const path = shown && !shown.startsWith('..') && !isAbsolute(shown) ? shown : served.dir;
    ctx.observer.info(
      served.created ? `serving version ${served.version}: ${path}` : `serving version ${served.version} is this export already: ${path}`,
    );
    return path;
  },
};

interface GateResult {
  metric: GateMetric;
  rule: string;
  value: number;
  passed: boolean;
}

function checkGate(gate: ExportOptions['gate'], test: ClassificationMetrics, where: string): GateResult[] {
  const results: GateResult[] = [];
  for (const [metric, b] of Object.entries(gate) as [GateMetric, Bound][]) {
    const value = test[metric];
    const min = typeof b === 'number' ? (GATE_METRICS[metric] === 'min' ? b : undefined) : b.min;
    const max = typeof b === 'number' ? (GATE_METRICS[metric] === 'max' ? b : undefined) : b.max;
    if (min !== undefined) results.push({ metric, rule: `${metric} >= ${min}`, value, passed: value >= min });
    if (max !== undefined) results.push({ metric, rule: `${metric} <= ${max}`, value, passed: value <= max });
  }
  const missed = results.filter((r) => !r.passed);
  if (missed.length) {
    throw new GateError(
      `${where}.gate: the model missed ${missed.map((r) => `${r.rule} (test ${r.metric} is ${r.value.toFixed(4)})`).join(' and ')}; ` +
        'nothing was exported. Improve the model or change the gate.',
    );
  }
  return results;
}

/**
 * The source model.json and weights unchanged (quantized bytes stay quantized), resharded, with a
 * softmax layer appended to the topology when the model serves probabilities but outputs logits.
 */
async function writeTfjsLayers(source: tf.io.ModelArtifacts, dir: string, appendSoftmax: boolean, shardBytes: number): Promise<void> {
  let topology = source.modelTopology as { class_name: string; config: { layers: unknown[] } };
  if (appendSoftmax) {
    if (topology.class_name !== 'Sequential') throw new Error('appending a softmax is supported for Sequential models only');
    topology = structuredClone(topology);
    topology.config.layers.push({
      class_name: 'Activation',
      config: { name: 'probabilities', trainable: true, dtype: 'float32', activation: 'softmax' },
    });
  }
  await writeLayersModelFiles(
    dir,
    { modelTopology: topology as unknown as tf.io.ModelArtifacts['modelTopology'], weightSpecs: source.weightSpecs, generatedBy: source.generatedBy },
    new Uint8Array(source.weightData as ArrayBuffer),
    { shardBytes },
  );
}

interface FormatCheck {
  samples: number;
  maxAbsDiff: number;
  argmaxAgreement: number;
}

/**
 * Loads the tfjs formats just written with stock tfjs loaders and compares their predictions with
 * the source model's on test samples. (ONNX and SavedModel need runtimes that are not ours to ship;
 * the test suite checks them with onnxruntime and by decoding.)
 */
async function checkTfjsFormats(
  dir: string,
  formats: ExportFormat[],
  graph: ExportGraph | undefined,
  model: tf.LayersModel,
  test: { x: Float32Array; count: number },
  spec: InputSpec,
  appendSoftmax: boolean,
): Promise<Partial<Record<ExportFormat, FormatCheck>>> {
  const count = Math.min(CHECK_SAMPLES, test.count);
  const features = spec.featureShape.reduce((a, b) => a * b, 1);
  const x = tf.tensor(test.x.subarray(0, count * features), [count, ...spec.featureShape]);
  const checks: Partial<Record<ExportFormat, FormatCheck>> = {};
  try {
    const expected = tf.tidy(() => {
      const y = model.predict(x) as tf.Tensor;
      return appendSoftmax ? tf.softmax(y) : y;
    });
    const compare = async (format: ExportFormat, predict: () => tf.Tensor) => {
      const got = tf.tidy(predict);
      const [diff, agree] = tf.tidy(() => [
        tf.max(tf.abs(tf.sub(got, expected))),
        tf.mean(tf.cast(tf.equal(tf.argMax(got, 1), tf.argMax(expected, 1)), 'float32')),
      ]);
      checks[format] = { samples: count, maxAbsDiff: (await diff.data())[0], argmaxAgreement: (await agree.data())[0] };
      tf.dispose([got, diff, agree]);
    };
    if (formats.includes('tfjs-layers')) {
      const layers = await tf.loadLayersModel(tf.io.fromMemory(await readModelArtifacts(join(dir, 'tfjs-layers', MODEL_JSON))));
      await compare('tfjs-layers', () => layers.predict(x) as tf.Tensor);
      layers.dispose();
    }
    if (formats.includes('tfjs-graph') && graph) {
      const { modelJson, shards } = tfjsGraphArtifacts(graph);
      const loaded = await tf.loadGraphModel(tf.io.fromMemory(graphModelArtifacts(modelJson as unknown as tf.io.ModelJSON, shards)));
      await compare('tfjs-graph', () => loaded.predict(x) as tf.Tensor);
      loaded.dispose();
    }
    expected.dispose();
  } finally {
    x.dispose();
  }
  return checks;
}

async function formatBytes(dir: string, format: ExportFormat): Promise<number> {
  const folder = format === 'saved-model' ? undefined : FORMAT_PATHS[format].split('/')[0];
  const files = folder ? (await listFilesRecursive(join(dir, folder))).map((f) => join(folder, f)) : ['saved_model.pb'];
  let total = 0;
  for (const f of files) total += (await stat(join(dir, f))).size;
  return total;
}

function modelCard(args: {
  o: ExportOptions;
  spec: InputSpec;
  dataset: { name: string; hash: string; test: { count: number } };
  test: ClassificationMetrics;
  gate: GateResult[];
  graph: ExportGraph | undefined;
  model: tf.LayersModel;
  input: { version: { pipeline: string; stage: string; version: number; manifest: { fingerprint: string; kind: string; inputs: unknown } } };
  outputName: string;
  sizes: Record<string, number>;
}) {
  const { o, spec, dataset, test, gate, graph, model, input, outputName } = args;
  const dims = (shape: (number | null)[]) => shape.map((d) => d ?? -1);
  const outputShape = dims(model.outputs[0].shape);
  return {
    schemaVersion: 1,
    modelName: o.modelName,
    formats: Object.fromEntries(o.formats.map((f) => [f, { path: FORMAT_PATHS[f], bytes: args.sizes[f] }])),
    signature: {
      name: 'serving_default',
      method: 'tensorflow/serving/predict',
      // tfjs-layers keeps the layers model's own tensor names; the graph formats use these.
      inputs: { [graph?.input.name ?? 'input']: { shape: dims(model.inputs[0].shape), dtype: 'float32' } },
      outputs: { [outputName]: { shape: outputShape, dtype: 'float32', meaning: outputName === 'logits' ? 'logits' : 'class probabilities' } },
    },
    labels: spec.classes,
    preprocessing: {
      ...spec.preprocessing,
      note: 'apply to raw features before the model: scale: x / scale; minmax: (x - min) / (max - min); standard: (x - mean) / std',
    },
    metrics: { split: 'test', samples: test.samples, accuracy: test.accuracy, loss: test.loss, macroF1: test.macroF1, perClass: test.perClass },
    gate,
    dataset: { name: dataset.name, hash: dataset.hash, testSamples: dataset.test.count },
    lineage: {
      pipeline: input.version.pipeline,
      stage: input.version.stage,
      kind: input.version.manifest.kind,
      version: input.version.version,
      fingerprint: input.version.manifest.fingerprint,
      inputs: input.version.manifest.inputs,
    },
    parameters: model.countParams(),
    producer: `tfjs-pipeline ${TOOL_VERSION}`,
  };
}
