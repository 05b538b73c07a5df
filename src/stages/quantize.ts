import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  chooseEncodings,
  compareTensors,
  QUANTIZATION_DTYPES,
  quantizingEncoder,
  storedWeightSizes,
  type QuantizationDtype,
  type TensorError,
  type WeightChoice,
  type WeightEncoding,
} from '../compress/quantization.js';
import { loadLayersModelFrom, MODEL_JSON, readModelArtifacts, saveLayersModel } from '../models/io.js';
import { parseLossSpec } from '../models/losses.js';
import { evaluateClassifier, type ClassificationMetrics } from '../train/metrics.js';
import { writeFileSynced } from '../util/fs.js';
import { INPUT_SPEC_FILE, modelInput } from './model-output.js';
import type { StageKind } from './types.js';

// `uses: quantize`: post-training weight quantization. The output is a standard tfjs layers model
// whose weights manifest carries tensorflowjs_converter's `quantization` entries, so stock
// tf.loadLayersModel dequantizes it on load; our own loader (and so evaluate, export) reads it the
// same way. The accuracy and per-tensor errors below are measured on the files as written.

export interface QuantizeOptions extends Record<string, unknown> {
  from: string;
  data: string;
  dtype: QuantizationDtype;
  layers: Record<string, WeightEncoding>;
  minElements: number;
}

/** The reference's threshold: biases and batch-norm vectors stay float32, they are a rounding error in size. */
const DEFAULT_MIN_ELEMENTS = 1024;

export const quantizeStage: StageKind<QuantizeOptions> = {
  kind: 'quantize',
  description: "store a stage's model with uint8, uint16 or float16 weights that stock tfjs dequantizes on load",
  options: {
    from: { type: 'string', description: 'the stage whose model to quantize' },
    data: { type: 'string', description: 'data set for test accuracy before and after (default: the one the model was trained on)' },
    dtype: { enum: [...QUANTIZATION_DTYPES], default: 'uint8', description: 'affine uint8/uint16 per tensor (zero exact), or float16' },
    layers: {
      type: 'object',
      additionalProperties: { enum: [...QUANTIZATION_DTYPES, 'float32'] },
      description: 'per-weight encoding by wildcard on weight ("conv1/kernel") or layer ("conv1") names; float32 keeps one as is',
    },
    minElements: {
      type: 'integer',
      minimum: 0,
      default: DEFAULT_MIN_ELEMENTS,
      description: 'weights with fewer elements (biases, batch-norm) stay float32 unless `layers` names them',
    },
  },
  required: ['from'],
  resolve: (o, ctx) => ({
    from: o.from,
    data: o.data ?? ctx.dataOf(o.from) ?? '',
    dtype: o.dtype ?? 'uint8',
    layers: o.layers ?? {},
    minElements: o.minElements ?? DEFAULT_MIN_ELEMENTS,
  }),
  inputs: (o) => ({ stages: [o.from], data: o.data ? [o.data] : [] }),
  async run(ctx, o) {
    const where = `stages.${ctx.stage}`;
    const { input, spec, dataset } = await modelInput(ctx, o.from, o.data);
    const loss = parseLossSpec(undefined);
    const test = (m: tf.LayersModel): Promise<ClassificationMetrics> =>
      evaluateClassifier(m, dataset.test, dataset.featureShape, dataset.classes, loss, spec.outputIsProbabilities);

    const model = await input.loadModel();
    let choices: WeightChoice[] = [];
    let original: tf.NamedTensorMap = {};
    let before: ClassificationMetrics;
    try {
      before = await test(model);
      await saveLayersModel(model, ctx.outDir, {
        encodeWeights(specs, data) {
          choices = chooseEncodings(specs, o, where);
          original = tf.io.decodeWeights(data.slice().buffer, specs);
          return quantizingEncoder(choices)(specs, data);
        },
      });
    } finally {
      model.dispose();
    }
    // The model's input spec is its source's: quantization changes no input, class or normalisation.
    await writeFileSynced(join(ctx.outDir, INPUT_SPEC_FILE), await readFile(join(input.version.dir, INPUT_SPEC_FILE)));

    // Decode what was written with tfjs's own decoder, the code every stock loader runs.
    const modelJson = join(ctx.outDir, MODEL_JSON);
    const written = await readModelArtifacts(modelJson);
    const restored = tf.io.decodeWeights(written.weightData!, written.weightSpecs!);
    const entries = new Map(written.weightSpecs!.map((s) => [s.name, s.quantization]));
    const tensors: TensorError[] = [];
    for (const c of choices) {
      const q = entries.get(c.name);
      tensors.push({
        name: c.name,
        shape: c.shape,
        encoding: c.encoding,
        ...(q?.scale !== undefined ? { scale: q.scale, min: q.min } : {}),
        ...compareTensors(await original[c.name].data(), await restored[c.name].data()),
      });
    }
    tf.dispose([...Object.values(original), ...Object.values(restored)]);

    const quantized = await loadLayersModelFrom(modelJson);
    let after: ClassificationMetrics;
    try {
      after = await test(quantized);
    } finally {
      quantized.dispose();
    }
    const sizeBefore = await storedWeightSizes(join(input.version.dir, MODEL_JSON));
    const sizeAfter = await storedWeightSizes(modelJson);
    const count = (e: WeightEncoding) => choices.filter((c) => c.encoding === e).length;
    const lostZeros = tensors.filter((t) => t.zerosKept < t.zerosBefore).map((t) => t.name);
    if (lostZeros.length) ctx.observer.info(`warning: exact zeros were not all kept in ${lostZeros.join(', ')}`);
    ctx.observer.info(
      `${choices.length - count('float32')} of ${choices.length} weights quantized (${o.dtype} by default); ` +
        `test accuracy ${before.accuracy.toFixed(4)} -> ${after.accuracy.toFixed(4)}; ` +
        `${sizeBefore.raw} -> ${sizeAfter.raw} bytes raw, ${sizeBefore.gzip} -> ${sizeAfter.gzip} gzipped`,
    );
    return {
      metrics: {
        test: { before: { accuracy: before.accuracy, loss: before.loss, macroF1: before.macroF1 }, after },
        encodings: Object.fromEntries((['uint8', 'uint16', 'float16', 'float32'] as const).map((e) => [e, count(e)])),
        tensors,
        maxAbsError: Math.max(0, ...tensors.map((t) => t.maxAbsError)),
        size: { before: sizeBefore, after: sizeAfter, rawRatio: sizeBefore.raw / sizeAfter.raw, gzipRatio: sizeBefore.gzip / sizeAfter.gzip },
        dataset: { name: dataset.name, test: dataset.test.count },
      },
      headline: {
        test_accuracy: after.accuracy,
        test_accuracy_before: before.accuracy,
        raw_bytes: sizeAfter.raw,
        gzip_bytes: sizeAfter.gzip,
      },
    };
  },
};
