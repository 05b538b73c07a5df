import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { buildModel, countParameters, outputsProbabilities, type ModelSpec } from '../models/build.js';
import { modelFiles } from '../models/io.js';
import { layerSchema } from '../models/layers.js';
import { lossSchema, parseLossSpec, type LossSpec, type ResolvedLoss } from '../models/losses.js';
import { createOptimizer, optimizerSchema, type OptimizerSpec } from '../models/optimizers.js';
import type * as tf from '@tensorflow/tfjs';
import type { LoadedDataset } from '../data/types.js';
import { fit, type FitOptions, type Monitor } from '../train/loop.js';
import { evaluateClassifier } from '../train/metrics.js';
import { writeModelOutput } from './model-output.js';
import type { JsonSchema, StageContext, StageKind } from './types.js';

export interface TrainOptions extends Record<string, unknown> {
  data: string;
  model: ModelSpec;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerSpec;
  loss: LossSpec;
  monitor: Monitor;
  earlyStopping: { patience: number; minDelta: number } | false;
  restoreBestWeights: boolean;
  shuffle: boolean;
}

export const modelSchema: JsonSchema = {
  description: 'a Keras-style list of layers, or the path of a tfjs layers model.json to start from',
  oneOf: [
    {
      type: 'object',
      properties: { layers: { type: 'array', minItems: 1, items: layerSchema() } },
      required: ['layers'],
      additionalProperties: false,
    },
    {
      type: 'object',
      properties: { path: { type: 'string', minLength: 1 } },
      required: ['path'],
      additionalProperties: false,
    },
  ],
};

/** Options shared by every kind that runs the training loop (train, distill, prune's fine-tuning). */
export const trainingOptionsSchema: Record<string, JsonSchema> = {
  epochs: { type: 'integer', minimum: 1, maximum: 100000, default: 10 },
  batchSize: { type: 'integer', minimum: 1, maximum: 1048576, default: 32 },
  optimizer: optimizerSchema(),
  loss: lossSchema(),
  monitor: { enum: ['val_accuracy', 'val_loss'], default: 'val_accuracy', description: 'what picks the best epoch' },
  earlyStopping: {
    description: 'stop after `patience` epochs without improvement of `monitor` (false: never)',
    oneOf: [
      { const: false },
      {
        type: 'object',
        properties: { patience: { type: 'integer', minimum: 1 }, minDelta: { type: 'number', minimum: 0 } },
        additionalProperties: false,
      },
    ],
  },
  restoreBestWeights: { type: 'boolean', default: true },
  shuffle: { type: 'boolean', default: true },
};

export function resolveTrainingOptions<O extends Record<string, unknown>>(o: O) {
  const early = o.earlyStopping as { patience?: number; minDelta?: number } | false | undefined;
  return {
    ...o,
    epochs: (o.epochs as number | undefined) ?? 10,
    batchSize: (o.batchSize as number | undefined) ?? 32,
    optimizer: (o.optimizer as OptimizerSpec | undefined) ?? 'adam',
    loss: (o.loss as LossSpec | undefined) ?? 'sparseCategoricalCrossentropy',
    monitor: (o.monitor as Monitor | undefined) ?? 'val_accuracy',
    earlyStopping: early ? { patience: early.patience ?? 3, minDelta: early.minDelta ?? 0 } : (false as const),
    restoreBestWeights: (o.restoreBestWeights as boolean | undefined) ?? true,
    shuffle: (o.shuffle as boolean | undefined) ?? true,
  };
}

/** What the loop needs of a stage's resolved training options (train, distill, prune). */
export interface LoopSettings {
  epochs: number;
  batchSize: number;
  optimizer: OptimizerSpec;
  monitor: Monitor;
  earlyStopping?: { patience: number; minDelta: number } | false;
  restoreBestWeights: boolean;
  shuffle: boolean;
}

/**
 * The training loop's options for a stage: its data, model and settings; callers override the rest.
 * `checkpoint` names the loop's checkpoint among the stage's (distill runs two loops).
 */
export function fitOptionsFor(
  ctx: StageContext,
  o: LoopSettings,
  dataset: LoadedDataset,
  model: tf.LayersModel,
  loss: ResolvedLoss,
  purpose: string,
  checkpoint: string,
): FitOptions {
  const hasValidation = dataset.validation.count > 0;
  return {
    model,
    train: dataset.train,
    validation: dataset.validation,
    featureShape: dataset.featureShape,
    numClasses: dataset.classes.length,
    epochs: o.epochs,
    batchSize: o.batchSize,
    optimizer: createOptimizer(o.optimizer),
    loss,
    outputIsProbabilities: outputsProbabilities(model),
    // Without a validation split the best epoch is chosen on the training metric instead.
    monitor: hasValidation ? o.monitor : (o.monitor.replace('val_', '') as Monitor),
    patience: o.earlyStopping ? o.earlyStopping.patience : undefined,
    minDelta: o.earlyStopping ? o.earlyStopping.minDelta : 0,
    restoreBestWeights: o.restoreBestWeights,
    shuffle: o.shuffle,
    seed: ctx.seed,
    purpose,
    observer: ctx.observer,
    shouldStop: ctx.shouldStop,
    checkpoint: ctx.checkpoint(checkpoint),
  };
}

export const trainStage: StageKind<TrainOptions> = {
  kind: 'train',
  description: 'fit a model on a data set, keep the best epoch, and report test metrics',
  options: { data: { type: 'string', description: 'name of a data set under `data`' }, model: modelSchema, ...trainingOptionsSchema },
  required: ['data', 'model'],
  resolve: (o) => resolveTrainingOptions(o),
  inputs: (o) => ({ stages: [], data: [o.data] }),
  externalFiles: async (o, baseDir) => ('path' in o.model ? modelFiles(resolve(baseDir, o.model.path)) : []),
  async run(ctx, o) {
    const dataset = await ctx.data(o.data);
    const model = await buildModel(o.model, {
      baseDir: ctx.baseDir,
      where: `stages.${ctx.stage}.model`,
      inputShape: dataset.featureShape,
      numClasses: dataset.classes.length,
    });
    const isProbabilities = outputsProbabilities(model);
    const loss = parseLossSpec(o.loss);
    const parameters = countParameters(model);
    ctx.observer.info(
      `${parameters.toLocaleString('en-US')} parameters; ${dataset.train.count} train / ` +
        `${dataset.validation.count} validation / ${dataset.test.count} test samples`,
    );
    const hasValidation = dataset.validation.count > 0;
    const result = await fit(fitOptionsFor(ctx, o, dataset, model, loss, `train:${ctx.stage}`, 'training'));
    // Interrupted: the engine publishes nothing, so testing and writing would be wasted.
    if (ctx.shouldStop()) return { metrics: {}, headline: {} };
    const test = await evaluateClassifier(model, dataset.test, dataset.featureShape, dataset.classes, loss, isProbabilities);
    await writeModelOutput(ctx.outDir, model, dataset, isProbabilities);
    await writeFile(join(ctx.outDir, 'history.json'), `${JSON.stringify(result.history, null, 2)}\n`);
    const best = result.history.find((h) => h.epoch === result.bestEpoch);
    model.dispose();
    return {
      metrics: {
        test,
        bestEpoch: result.bestEpoch,
        epochsRun: result.history.length,
        stoppedEarly: result.stoppedEarly,
        best,
        parameters,
        dataset: { name: dataset.name, train: dataset.train.count, validation: dataset.validation.count, test: dataset.test.count },
      },
      headline: {
        test_accuracy: test.accuracy,
        test_loss: test.loss,
        ...(best && hasValidation ? { val_accuracy: best.val_accuracy } : {}),
        best_epoch: result.bestEpoch,
        parameters,
      },
    };
  },
};
