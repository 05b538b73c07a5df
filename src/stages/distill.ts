import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { distillationLoss, logitsOf } from '../compress/distillation.js';
import type { DataSplit, LoadedDataset } from '../data/types.js';
import { InputError } from '../errors.js';
import { buildModel, countParameters, outputsProbabilities } from '../models/build.js';
import { modelFiles } from '../models/io.js';
import { classificationLoss, parseLossSpec, type ResolvedLoss } from '../models/losses.js';
import { fit, type FitOptions, type FitResult } from '../train/loop.js';
import { argmaxRows, classificationReport, predictSplit, type ClassificationMetrics } from '../train/metrics.js';
import { readInputSpec, writeModelOutput } from './model-output.js';
import { fitOptionsFor, modelSchema, resolveTrainingOptions, trainingOptionsSchema, type TrainOptions } from './train.js';
import type { StageContext, StageKind, StageResult } from './types.js';

// A student learns from a trained teacher's softened outputs as well as from the labels, and, unless
// `baseline: false`, the same student is also trained on the labels alone with the same budget,
// starting from the same initial weights and seeing the same batches, so metrics.json shows what
// the teacher bought rather than a number with nothing to compare it to.

export const DEFAULT_TEMPERATURE = 4;
export const DEFAULT_ALPHA = 0.5;

export interface DistillOptions extends TrainOptions {
  teacher: string;
  temperature: number;
  alpha: number;
  baseline: boolean;
}

interface TrainedStudent {
  result: FitResult;
  test: ClassificationMetrics;
  predicted: Int32Array;
  seconds: number;
}

export const distillStage: StageKind<DistillOptions> = {
  kind: 'distill',
  description: "train a smaller student on a teacher stage's temperature-softened outputs and the labels, against a hard-label baseline",
  options: {
    teacher: { type: 'string', description: 'the stage whose model teaches (any stage that writes a model)' },
    data: {
      type: 'string',
      description: "data set name (default: the teacher's); must have the teacher's classes, sample shape and normalisation",
    },
    model: { ...modelSchema, description: `the student: ${String(modelSchema.description)}` },
    temperature: {
      type: 'number',
      exclusiveMinimum: 0,
      default: DEFAULT_TEMPERATURE,
      description: 'T: both softmaxes are taken of logits / T; higher T exposes more of the teacher\'s ranking of wrong classes',
    },
    alpha: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: DEFAULT_ALPHA,
      description: 'weight of the hard-label loss; the teacher term gets 1 - alpha (scaled by T^2)',
    },
    baseline: {
      type: 'boolean',
      default: true,
      description: 'also train the student on hard labels alone with the same budget, to report what distillation gained',
    },
    ...trainingOptionsSchema,
  },
  required: ['teacher', 'model'],
  resolve(o, ctx) {
    return {
      ...resolveTrainingOptions(o),
      data: o.data ?? ctx.dataOf(o.teacher) ?? '',
      temperature: o.temperature ?? DEFAULT_TEMPERATURE,
      alpha: o.alpha ?? DEFAULT_ALPHA,
      baseline: o.baseline ?? true,
    };
  },
  inputs: (o) => ({ stages: [o.teacher], data: o.data ? [o.data] : [] }),
  // A student that starts from a model.json: its files are inputs as much as the teacher is.
  externalFiles: async (o, baseDir) => ('path' in o.model ? modelFiles(resolve(baseDir, o.model.path)) : []),
  run: runDistill,
};

async function runDistill(ctx: StageContext, o: DistillOptions): Promise<StageResult> {
  const where = `stages.${ctx.stage}`;
  const loss = parseLossSpec(o.loss);
  if (loss.name === 'meanSquaredError') {
    throw new InputError(
      `${where}.loss: distill's hard-label term is a cross-entropy; meanSquaredError cannot be combined with the ` +
        'teacher term: remove `loss` or use sparseCategoricalCrossentropy (labelSmoothing allowed)',
    );
  }
  const input = await ctx.input(o.teacher);
  const [spec, dataset] = await Promise.all([readInputSpec(input.version.dir), ctx.data(o.data)]);
  checkSameData(where, o.teacher, spec, dataset);
  if (spec.dataset !== dataset.name) {
    ctx.observer.info(`teacher "${o.teacher}" was trained on data set "${spec.dataset}"; distilling on "${dataset.name}"`);
  }
  const numClasses = dataset.classes.length;

  // Teacher outputs depend only on the inputs, and the inputs are fixed (no augmentation), so one
  // pass per split replaces a teacher forward pass per step; augmentation would make them per step.
  const teacherModel = await input.loadModel();
  let teacherTrainOutputs: Float32Array;
  let teacherTestOutputs: Float32Array;
  let teacherLogitsSeconds: number;
  const teacherParameters = countParameters(teacherModel);
  try {
    const outputs = teacherModel.outputs[0].shape;
    if (outputs.length !== 2 || outputs[1] !== numClasses) {
      throw new InputError(
        `${where}.teacher: stage "${o.teacher}" outputs shape [${outputs.slice(1).join(', ')}] per sample but data set ` +
          `"${dataset.name}" has ${numClasses} classes`,
      );
    }
    const started = Date.now();
    teacherTrainOutputs = await predictSplit(teacherModel, dataset.train, dataset.featureShape);
    teacherLogitsSeconds = (Date.now() - started) / 1000;
    teacherTestOutputs = await predictSplit(teacherModel, dataset.test, dataset.featureShape);
  } finally {
    teacherModel.dispose();
  }
  ctx.observer.info(
    `teacher logits computed once for ${dataset.train.count.toLocaleString('en-US')} training samples in ` +
      `${teacherLogitsSeconds.toFixed(1)}s (inputs are fixed: no augmentation)` +
      (spec.outputIsProbabilities ? '; the teacher ends in softmax, so its logits are recovered as log(p)' : ''),
  );
  const teacherTest = await splitMetrics(dataset.test, teacherTestOutputs, dataset.classes, loss, spec.outputIsProbabilities);
  const teacherPredicted = argmaxRows(teacherTestOutputs, numClasses);

  const student = await buildModel(o.model, {
    baseDir: ctx.baseDir,
    where: `${where}.model`,
    inputShape: dataset.featureShape,
    numClasses,
  });
  const studentIsProbabilities = outputsProbabilities(student);
  if (studentIsProbabilities) {
    ctx.observer.info(
      'the student ends in softmax: its logits are recovered as log(p), which passes no gradient where p underflows; ' +
        'a last dense layer without activation trains better',
    );
  }
  const parameters = countParameters(student);
  ctx.observer.info(
    `student ${parameters.toLocaleString('en-US')} parameters (teacher ${teacherParameters.toLocaleString('en-US')}, ` +
      `${(teacherParameters / parameters).toFixed(1)}x); T ${o.temperature}, alpha ${o.alpha}; ${dataset.train.count} train / ` +
      `${dataset.validation.count} validation / ${dataset.test.count} test samples`,
  );

  let baseline: TrainedStudent | undefined;
  let baselineParameters = 0;
  let distilled: TrainedStudent;
  const teacherLogits = tf.tidy(() =>
    logitsOf(tf.tensor2d(teacherTrainOutputs, [dataset.train.count, numClasses]), spec.outputIsProbabilities),
  );
  try {
    if (o.baseline) {
      // Same architecture, initial weights, batches (same seed and purpose), optimizer and epochs:
      // the labels-only loss is the one difference from the distilled student.
      const twin = await buildModel(o.model, { baseDir: ctx.baseDir, where: `${where}.model`, inputShape: dataset.featureShape, numClasses });
      try {
        twin.setWeights(student.getWeights());
        baselineParameters = countParameters(twin);
        ctx.observer.info('baseline: the same student on hard labels alone, same budget and initial weights');
        baseline = await trainStudent(ctx, o, dataset, twin, loss, studentIsProbabilities, 'baseline');
      } finally {
        twin.dispose();
      }
      ctx.observer.info(`baseline test accuracy ${baseline.test.accuracy.toFixed(4)}`);
    }
    // Ctrl-C: the engine publishes nothing of this stage, so there is nothing left worth doing.
    if (ctx.shouldStop()) return { metrics: {}, headline: {} };
    ctx.observer.info(`distilling from "${o.teacher}" (teacher test accuracy ${teacherTest.accuracy.toFixed(4)})`);
    distilled = await trainStudent(ctx, o, dataset, student, loss, studentIsProbabilities, 'student', ({ output, labels, indices }) =>
      distillationLoss(output, tf.gather(teacherLogits, indices) as tf.Tensor2D, labels, {
        temperature: o.temperature,
        alpha: o.alpha,
        studentIsProbabilities,
        labelSmoothing: loss.labelSmoothing,
      }),
    );
    if (ctx.shouldStop()) return { metrics: {}, headline: {} };
    await writeModelOutput(ctx.outDir, student, dataset, studentIsProbabilities);
  } finally {
    teacherLogits.dispose();
    student.dispose();
  }
  await writeFile(join(ctx.outDir, 'history.json'), `${JSON.stringify(distilled.result.history, null, 2)}\n`);
  if (baseline) {
    await writeFile(join(ctx.outDir, 'baseline-history.json'), `${JSON.stringify(baseline.result.history, null, 2)}\n`);
  }

  const agreement = agreementOf(distilled.predicted, teacherPredicted);
  const gain = baseline ? distilled.test.accuracy - baseline.test.accuracy : undefined;
  ctx.observer.info(
    `student test accuracy ${distilled.test.accuracy.toFixed(4)}` +
      (baseline && gain !== undefined
        ? ` vs baseline ${baseline.test.accuracy.toFixed(4)} (${gain >= 0 ? '+' : ''}${(gain * 100).toFixed(2)} points)`
        : '') +
      `; teacher ${teacherTest.accuracy.toFixed(4)}; agreement with the teacher ${agreement.toFixed(4)}`,
  );
  const summary = (s: TrainedStudent, params: number) => ({
    test: s.test,
    parameters: params,
    bestEpoch: s.result.bestEpoch,
    epochsRun: s.result.history.length,
    stoppedEarly: s.result.stoppedEarly,
    best: s.result.history.find((h) => h.epoch === s.result.bestEpoch),
    trainSeconds: s.seconds,
  });
  return {
    metrics: {
      student: summary(distilled, parameters),
      teacher: {
        stage: o.teacher,
        version: input.version.version,
        parameters: teacherParameters,
        outputIsProbabilities: spec.outputIsProbabilities,
        test: teacherTest,
      },
      ...(baseline ? { baseline: { ...summary(baseline, baselineParameters), agreement: agreementOf(baseline.predicted, teacherPredicted) } } : {}),
      agreement,
      ...(gain !== undefined ? { gain } : {}),
      distillation: {
        temperature: o.temperature,
        alpha: o.alpha,
        teacherLogits: { computed: 'once', samples: dataset.train.count, seconds: teacherLogitsSeconds, fromProbabilities: spec.outputIsProbabilities },
      },
      compression: teacherParameters / parameters,
      dataset: { name: dataset.name, train: dataset.train.count, validation: dataset.validation.count, test: dataset.test.count },
    },
    headline: {
      test_accuracy: distilled.test.accuracy,
      ...(baseline ? { baseline_accuracy: baseline.test.accuracy } : {}),
      teacher_accuracy: teacherTest.accuracy,
      agreement,
      parameters,
    },
  };
}

async function trainStudent(
  ctx: StageContext,
  o: DistillOptions,
  dataset: LoadedDataset,
  model: tf.LayersModel,
  loss: ResolvedLoss,
  isProbabilities: boolean,
  checkpoint: string,
  batchLoss?: FitOptions['batchLoss'],
): Promise<TrainedStudent> {
  const started = Date.now();
  const result = await fit({
    // One purpose for both runs: the baseline and the distilled student see the same batch order
    // (and the same dropout masks).
    ...fitOptionsFor(ctx, o, dataset, model, loss, `distill:${ctx.stage}`, checkpoint),
    outputIsProbabilities: isProbabilities,
    batchLoss,
  });
  const seconds = (Date.now() - started) / 1000;
  const outputs = await predictSplit(model, dataset.test, dataset.featureShape);
  return {
    result,
    test: await splitMetrics(dataset.test, outputs, dataset.classes, loss, isProbabilities),
    predicted: argmaxRows(outputs, dataset.classes.length),
    seconds,
  };
}

/** evaluateClassifier's figures from outputs already computed (they are needed for agreement too). */
async function splitMetrics(
  split: DataSplit,
  outputs: Float32Array,
  classes: string[],
  loss: ResolvedLoss,
  isProbabilities: boolean,
): Promise<ClassificationMetrics> {
  const lossTensor = tf.tidy(() =>
    classificationLoss(loss, tf.tensor1d(split.y, 'int32'), tf.tensor2d(outputs, [split.count, classes.length]), isProbabilities),
  );
  // data(), not dataSync(): the latter throws on webgpu in Node.
  const value = (await lossTensor.data())[0];
  lossTensor.dispose();
  return { ...classificationReport(split.y, argmaxRows(outputs, classes.length), classes), loss: value };
}

function agreementOf(a: Int32Array, b: Int32Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return a.length ? same / a.length : 0;
}

function checkSameData(
  where: string,
  teacher: string,
  spec: { classes: string[]; featureShape: number[]; preprocessing: unknown; dataset: string },
  dataset: LoadedDataset,
): void {
  const fix = `; set ${where}.data to the data set the teacher was trained on ("${spec.dataset}")`;
  if (spec.classes.join('\u0000') !== dataset.classes.join('\u0000')) {
    throw new InputError(
      `${where}.data: teacher "${teacher}" was trained on classes [${spec.classes.join(', ')}] but data set ` +
        `"${dataset.name}" has [${dataset.classes.join(', ')}]${fix}`,
    );
  }
  if (spec.featureShape.join(',') !== dataset.featureShape.join(',')) {
    throw new InputError(
      `${where}.data: teacher "${teacher}" takes samples of shape [${spec.featureShape.join(', ')}] but data set ` +
        `"${dataset.name}" has [${dataset.featureShape.join(', ')}]${fix}`,
    );
  }
  if (JSON.stringify(spec.preprocessing) !== JSON.stringify(dataset.preprocessing)) {
    throw new InputError(
      `${where}.data: data set "${dataset.name}" is normalised differently from what teacher "${teacher}" was ` +
        `trained on, so the teacher would see different inputs${fix}`,
    );
  }
}
