import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  countZeros,
  MagnitudePruner,
  overallSparsity,
  prunableLayers,
  resolveLayerTargets,
  type PruningSchedule,
  type ScheduleKind,
} from '../compress/pruning.js';
import { storedWeightSizes } from '../compress/quantization.js';
import type { LoadedDataset } from '../data/types.js';
import { InputError } from '../errors.js';
import { MODEL_JSON } from '../models/io.js';
import { parseLossSpec, type LossSpec } from '../models/losses.js';
import type { OptimizerSpec } from '../models/optimizers.js';
import { fit, type Monitor } from '../train/loop.js';
import { evaluateClassifier } from '../train/metrics.js';
import { modelInput, writeModelOutput } from './model-output.js';
import { fitOptionsFor, resolveTrainingOptions, trainingOptionsSchema } from './train.js';
import type { JsonSchema, StageKind, StageResult } from './types.js';

// `uses: prune`: magnitude pruning of an upstream model's kernels with the gradual schedule of
// Zhu & Gupta, fine-tuned by the shared training loop (src/train/loop.ts) with the masks
// re-applied after every optimizer step. The schedule is in epochs (fractions allowed), turned into
// optimizer steps at run time, so shrinking the data with --set keeps its shape.

export interface PruneOptions extends Record<string, unknown> {
  from: string;
  data: string;
  sparsity: number;
  schedule: ScheduleKind;
  initialSparsity: number;
  beginEpoch: number;
  endEpoch: number;
  frequency: number;
  layers: Record<string, number>;
  exclude: string[];
  epochs: number;
  batchSize: number;
  optimizer: OptimizerSpec;
  loss: LossSpec;
  monitor: Monitor;
  restoreBestWeights: boolean;
  shuffle: boolean;
}

const DEFAULT_EPOCHS = 6;
/** The reference recipe's fine-tuning rate (../shared/REFERENCE.md): lower than training's. */
const DEFAULT_OPTIMIZER: OptimizerSpec = { adam: { learningRate: 0.0003 } };

const sparsity: JsonSchema = { type: 'number', minimum: 0, exclusiveMaximum: 1 };
const epochPoint: JsonSchema = { type: 'number', minimum: 0 };

// Early stopping could end fine-tuning before the schedule reaches its target, so prune has none.
const { earlyStopping: _noEarlyStopping, ...fineTuningSchema } = trainingOptionsSchema;

export const pruneStage: StageKind<PruneOptions> = {
  kind: 'prune',
  description: "zero the smallest-magnitude kernel weights of a stage's model on a schedule, fine-tuning with the masks held",
  options: {
    from: { type: 'string', description: 'the stage whose model to prune' },
    data: { type: 'string', description: 'data set to fine-tune and test on (default: the one the model was trained on)' },
    sparsity: { ...sparsity, default: 0.5, description: 'final fraction of zeros in each pruned kernel' },
    schedule: {
      enum: ['polynomial', 'constant'],
      default: 'polynomial',
      description: 'polynomial: Zhu & Gupta, initialSparsity -> sparsity between beginEpoch and endEpoch; constant: sparsity from beginEpoch on',
    },
    initialSparsity: { ...sparsity, default: 0, description: 'sparsity at beginEpoch (polynomial)' },
    beginEpoch: { ...epochPoint, default: 0, description: 'epochs of fine-tuning before the first pruning (fractions allowed)' },
    endEpoch: {
      ...epochPoint,
      description: 'when the final sparsity is reached; masks are held from then on (default: epochs - 2, or epochs when epochs <= 2)',
    },
    frequency: { type: 'number', exclusiveMinimum: 0, default: 1, description: 'epochs between mask updates (0.25: four a epoch)' },
    layers: {
      type: 'object',
      additionalProperties: sparsity,
      description: 'per-layer final sparsity by layer name (wildcards), type (dense, conv2d) or first:TYPE / last:TYPE',
    },
    exclude: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      description: 'layers left dense, e.g. [first:conv2d, last:dense]',
    },
    ...fineTuningSchema,
    epochs: { ...fineTuningSchema.epochs, default: DEFAULT_EPOCHS },
    optimizer: { ...fineTuningSchema.optimizer, default: DEFAULT_OPTIMIZER },
  },
  required: ['from'],
  resolve(o, ctx) {
    const { earlyStopping: _none, ...training } = resolveTrainingOptions({
      ...o,
      epochs: o.epochs ?? DEFAULT_EPOCHS,
      optimizer: o.optimizer ?? DEFAULT_OPTIMIZER,
    });
    const beginEpoch = o.beginEpoch ?? 0;
    const endEpoch = o.endEpoch ?? Math.max(beginEpoch, training.epochs > 2 ? training.epochs - 2 : training.epochs);
    const where = `the prune stage of "${o.from}"`;
    if (endEpoch > training.epochs) {
      throw new InputError(
        `${where}: endEpoch ${endEpoch} is after the last fine-tuning epoch (epochs: ${training.epochs}); ` +
          'raise epochs or lower endEpoch so the final sparsity is reached',
      );
    }
    if (beginEpoch > endEpoch) {
      throw new InputError(`${where}: beginEpoch ${beginEpoch} is after endEpoch ${endEpoch}; pruning must begin before it ends`);
    }
    const initialSparsity = o.initialSparsity ?? 0;
    const finalSparsity = o.sparsity ?? 0.5;
    if (initialSparsity > finalSparsity) {
      throw new InputError(`${where}: initialSparsity ${initialSparsity} is above sparsity ${finalSparsity}; the schedule only adds zeros`);
    }
    return {
      ...training,
      from: o.from,
      data: o.data ?? ctx.dataOf(o.from) ?? '',
      sparsity: finalSparsity,
      schedule: o.schedule ?? 'polynomial',
      initialSparsity,
      beginEpoch,
      endEpoch,
      frequency: o.frequency ?? 1,
      layers: o.layers ?? {},
      exclude: o.exclude ?? [],
    };
  },
  inputs: (o) => ({ stages: [o.from], data: o.data ? [o.data] : [] }),
  async run(ctx, o): Promise<StageResult> {
    const where = `stages.${ctx.stage}`;
    const { input, spec, dataset } = await modelInput(ctx, o.from, o.data);
    const model = await input.loadModel();
    const loss = parseLossSpec(o.loss);
    const isProbabilities = spec.outputIsProbabilities;
    const test = () => evaluateClassifier(model, dataset.test, dataset.featureShape, dataset.classes, loss, isProbabilities);
    const before = await test();
    const sizeBefore = await storedWeightSizes(join(input.version.dir, MODEL_JSON));

    const targets = resolveLayerTargets(prunableLayers(model), o, where);
    const stepsPerEpoch = Math.ceil(dataset.train.count / o.batchSize);
    const schedule: PruningSchedule = {
      kind: o.schedule,
      initialSparsity: o.initialSparsity,
      finalSparsity: o.sparsity,
      beginStep: Math.round(o.beginEpoch * stepsPerEpoch),
      endStep: Math.round(o.endEpoch * stepsPerEpoch),
      frequency: Math.max(1, Math.round(o.frequency * stepsPerEpoch)),
    };
    const pruned = targets.filter((t) => !t.excluded && t.target > 0);
    ctx.observer.info(
      `pruning ${pruned.length} of ${targets.length} kernels (${pruned.map((t) => `${t.layer} ${t.target}`).join(', ')}); ` +
        `${o.schedule} schedule over steps ${schedule.beginStep}..${schedule.endStep}, every ${schedule.frequency} ` +
        `(${stepsPerEpoch} steps an epoch)`,
    );

    // The best epoch (restoreBestWeights) is chosen among those that end at the target sparsity: an
    // earlier one would bring back weights the schedule had not pruned yet.
    const pruner = new MagnitudePruner(targets, schedule);
    try {
      pruner.afterStep(0);
      const result = await fit({
        ...fitOptionsFor(ctx, { ...o, earlyStopping: false }, dataset, model, loss, `prune:${ctx.stage}`, 'fine-tuning'),
        outputIsProbabilities: isProbabilities,
        bestFromStep: schedule.endStep,
        callbacks: {
          afterStep: (step) => pruner.afterStep(step),
          state: { save: () => pruner.saveState(), restore: (state) => pruner.restoreState(state) },
        },
      });
      // Interrupted: the engine publishes nothing, so measuring and writing would be wasted.
      if (ctx.shouldStop()) return { metrics: {}, headline: {} };
      const lastEpoch = result.history.at(-1)?.epoch ?? 0;
      const layers = await pruner.table();
      const after = await test();
      await writeModelOutput(ctx.outDir, model, dataset, isProbabilities);
      await writeFile(join(ctx.outDir, 'history.json'), `${JSON.stringify(result.history, null, 2)}\n`);
      const sizeAfter = await storedWeightSizes(join(ctx.outDir, MODEL_JSON));
      const allWeights = await Promise.all(model.weights.map((w) => countZeros(w.read())));
      const prunedSparsity = overallSparsity(layers.filter((l) => !l.excluded));
      ctx.observer.info(
        `sparsity ${layers.map((l) => `${l.layer} ${l.sparsity.toFixed(3)}`).join(', ')}; test accuracy ` +
          `${before.accuracy.toFixed(4)} -> ${after.accuracy.toFixed(4)}; gzip ${sizeBefore.gzip} -> ${sizeAfter.gzip} bytes`,
      );
      return {
        metrics: {
          test: { before: { accuracy: before.accuracy, loss: before.loss, macroF1: before.macroF1 }, after },
          sparsity: {
            target: o.sparsity,
            prunedLayers: prunedSparsity,
            allKernels: overallSparsity(layers),
            model: overallSparsity(allWeights),
            layers,
          },
          size: { before: sizeBefore, after: sizeAfter, gzipRatio: sizeBefore.gzip / sizeAfter.gzip },
          schedule: { ...schedule, stepsPerEpoch, stepsRun: result.steps, updates: pruner.updates },
          keptEpoch: o.restoreBestWeights && result.bestEpoch ? result.bestEpoch : lastEpoch,
          epochsRun: result.history.length,
          dataset: { name: dataset.name, train: dataset.train.count, validation: dataset.validation.count, test: dataset.test.count },
        },
        headline: {
          test_accuracy: after.accuracy,
          test_accuracy_before: before.accuracy,
          sparsity: prunedSparsity,
          gzip_bytes: sizeAfter.gzip,
        },
      };
    } finally {
      pruner.dispose();
      model.dispose();
    }
  },
};
