import * as tf from '@tensorflow/tfjs';
import type { DataSplit } from '../data/types.js';
import { classificationLoss, type ResolvedLoss } from '../models/losses.js';
import { createRng, permutation } from '../random.js';
import { argmaxRows, predictSplit } from './metrics.js';
import type { EpochLogs, TrainingObserver } from './progress.js';

// The one training loop behind train, distill and prune. It stages each split on the device once,
// gathers batches there, and keeps per-epoch sums as tensors so it reads values back only at epoch
// end (or when a progress bar asks). Stages change what it optimises through `batchLoss` (distill)
// and react to steps through callbacks (prune), instead of copying the loop.

export type Monitor = 'val_loss' | 'val_accuracy' | 'loss' | 'accuracy';

export interface BatchContext {
  /** Model output for the batch, computed in training mode. */
  output: tf.Tensor2D;
  labels: tf.Tensor1D;
  /** Row numbers of the batch in the training split, to look up per-sample targets. */
  indices: tf.Tensor1D;
}

export interface FitCallbacks {
  /** After every optimizer step (e.g. re-apply pruning masks). */
  afterStep?(step: number): void;
  afterEpoch?(logs: EpochLogs): void | Promise<void>;
}

export interface FitOptions {
  model: tf.LayersModel;
  train: DataSplit;
  validation: DataSplit;
  featureShape: number[];
  numClasses: number;
  epochs: number;
  batchSize: number;
  optimizer: tf.Optimizer;
  loss: ResolvedLoss;
  outputIsProbabilities: boolean;
  /** Replaces the loss of a batch (distillation); the default is `loss` on the labels. */
  batchLoss?: (ctx: BatchContext) => tf.Scalar;
  monitor: Monitor;
  /** Stop after this many epochs without improvement of `monitor`; undefined: never. */
  patience?: number;
  minDelta: number;
  restoreBestWeights: boolean;
  shuffle: boolean;
  seed: number;
  /** Distinguishes this loop's random stream from other stages'. */
  purpose: string;
  observer: TrainingObserver;
  callbacks?: FitCallbacks;
  /** Checked between batches; true stops training after the current batch. */
  shouldStop?: () => boolean;
}

export interface FitResult {
  history: EpochLogs[];
  bestEpoch: number;
  stoppedEarly: boolean;
  steps: number;
}

export async function fit(o: FitOptions): Promise<FitResult> {
  const xTrain = tf.tensor(o.train.x, [o.train.count, ...o.featureShape]);
  const yTrain = tf.tensor1d(o.train.y, 'int32');
  const variables = o.model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
  const batches = Math.ceil(o.train.count / o.batchSize);
  const history: EpochLogs[] = [];
  let best: { epoch: number; value: number; weights: tf.Tensor[] } | undefined;
  let sinceImprovement = 0;
  let stoppedEarly = false;
  let steps = 0;
  const better = (a: number, b: number) =>
    o.monitor.endsWith('loss') ? a < b - o.minDelta : a > b + o.minDelta;

  try {
    for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const started = Date.now();
      o.observer.epochStart(epoch, o.epochs, batches);
      const order = o.shuffle
        ? permutation(o.train.count, createRng(o.seed, `${o.purpose}:epoch:${epoch}`))
        : Int32Array.from({ length: o.train.count }, (_, i) => i);
      let lossSum: tf.Scalar = tf.scalar(0);
      let correctSum: tf.Scalar = tf.scalar(0);
      for (let b = 0; b < batches; b++) {
        const rows = order.subarray(b * o.batchSize, Math.min(o.train.count, (b + 1) * o.batchSize));
        const indices = tf.tensor1d(rows, 'int32');
        const xb = tf.gather(xTrain, indices);
        const yb = tf.gather(yTrain, indices) as tf.Tensor1D;
        let correct: tf.Scalar | undefined;
        const cost = o.optimizer.minimize(
          () => {
            const output = o.model.apply(xb, { training: true }) as tf.Tensor2D;
            correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(output, 1), yb), 'float32'))) as tf.Scalar;
            return o.batchLoss
              ? o.batchLoss({ output, labels: yb, indices })
              : classificationLoss(o.loss, yb, output, o.outputIsProbabilities);
          },
          true,
          variables,
        )!;
        steps++;
        o.callbacks?.afterStep?.(steps);
        const [nextLoss, nextCorrect] = tf.tidy(() => [
          tf.add(lossSum, tf.mul(cost, rows.length)) as tf.Scalar,
          tf.add(correctSum, correct!) as tf.Scalar,
        ]);
        tf.dispose([lossSum, correctSum, cost, correct!, xb, yb, indices]);
        lossSum = nextLoss;
        correctSum = nextCorrect;
        if (o.observer.wantsBatchUpdate()) {
          const seen = Math.min(o.train.count, (b + 1) * o.batchSize);
          const [loss, correct] = await Promise.all([lossSum.data(), correctSum.data()]);
          o.observer.batchEnd(b + 1, batches, loss[0] / seen, correct[0] / seen);
        }
        if (o.shouldStop?.()) break;
      }
      const [lossTotal, correctTotal] = await Promise.all([lossSum.data(), correctSum.data()]);
      tf.dispose([lossSum, correctSum]);
      const val = await validate(o);
      const logs: EpochLogs = {
        epoch,
        loss: lossTotal[0] / o.train.count,
        accuracy: correctTotal[0] / o.train.count,
        val_loss: val.loss,
        val_accuracy: val.accuracy,
        seconds: (Date.now() - started) / 1000,
      };
      if (!Number.isFinite(logs.loss)) {
        throw new Error(
          `training diverged in epoch ${epoch}: loss is ${logs.loss}` +
            (history.length ? ` (last finite: ${history.at(-1)!.loss.toFixed(4)} in epoch ${epoch - 1})` : '') +
            '; lower the learning rate or check the data for extreme values',
        );
      }
      history.push(logs);
      const value = logs[o.monitor];
      let note: string | undefined;
      if (!best || better(value, best.value)) {
        if (best) tf.dispose(best.weights);
        best = { epoch, value, weights: o.restoreBestWeights ? o.model.getWeights().map((w) => tf.clone(w)) : [] };
        sinceImprovement = 0;
        note = `${o.monitor} improved`;
      } else {
        sinceImprovement++;
      }
      o.observer.epochEnd(logs, o.epochs, note);
      await o.callbacks?.afterEpoch?.(logs);
      if (o.shouldStop?.()) break;
      if (o.patience !== undefined && sinceImprovement >= o.patience && epoch < o.epochs) {
        stoppedEarly = true;
        o.observer.info(`early stopping: no ${o.monitor} improvement for ${o.patience} epochs`);
        break;
      }
    }
    if (best && o.restoreBestWeights && best.epoch !== history.at(-1)?.epoch) {
      o.model.setWeights(best.weights);
      o.observer.info(`restored the weights of epoch ${best.epoch} (best ${o.monitor} ${best.value.toFixed(4)})`);
    }
    return { history, bestEpoch: best?.epoch ?? 0, stoppedEarly, steps };
  } finally {
    tf.dispose([xTrain, yTrain, ...(best?.weights ?? [])]);
  }
}

async function validate(o: FitOptions): Promise<{ loss: number; accuracy: number }> {
  if (o.validation.count === 0) return { loss: NaN, accuracy: NaN };
  const outputs = await predictSplit(o.model, o.validation, o.featureShape);
  const predicted = argmaxRows(outputs, o.numClasses);
  let correct = 0;
  for (let i = 0; i < predicted.length; i++) if (predicted[i] === o.validation.y[i]) correct++;
  const loss = tf.tidy(() =>
    classificationLoss(
      o.loss,
      tf.tensor1d(o.validation.y, 'int32'),
      tf.tensor2d(outputs, [o.validation.count, o.numClasses]),
      o.outputIsProbabilities,
    ),
  );
  const value = (await loss.data())[0];
  loss.dispose();
  return { loss: value, accuracy: correct / o.validation.count };
}
