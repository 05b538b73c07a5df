import * as tf from '@tensorflow/tfjs';
import type { DataSplit } from '../data/types.js';
import { classificationLoss, type ResolvedLoss } from '../models/losses.js';
import { createRng, permutation, withSeededMathRandom } from '../random.js';
import {
  decodeLoopState,
  encodeLoopState,
  renameOptimizerWeights,
  stateTensors,
  type BestEpoch,
  type CallbackState,
  type CheckpointSlot,
  type LoopState,
  type NamedTensor,
} from './checkpoint.js';
import { BatchLosses, validationDiverged } from './divergence.js';
import { argmaxRows, predictSplit } from './metrics.js';
import type { EpochLogs, TrainingObserver } from './progress.js';

// The one training loop behind train, distill and prune. It stages each split on the device once,
// gathers batches there, and keeps per-epoch sums as tensors so it reads values back only at epoch
// end (or when a progress bar asks). Stages change what it optimises through `batchLoss` (distill)
// and react to steps through callbacks (prune), instead of copying the loop. After every epoch it
// saves a checkpoint (checkpoint.ts) when given a slot, and resumes from the slot's checkpoint.

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
  /** What the callbacks carry across epochs (prune: its masks), saved with every checkpoint. */
  state?: {
    save(): CallbackState;
    /** Gets tensors it must copy to keep: the loop disposes them afterwards. */
    restore(state: CallbackState): void;
  };
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
  /** Only epochs that end after this many optimizer steps can be the best (prune: full sparsity). */
  bestFromStep?: number;
  shuffle: boolean;
  seed: number;
  /** Distinguishes this loop's random streams from other stages'. */
  purpose: string;
  observer: TrainingObserver;
  callbacks?: FitCallbacks;
  /** Checked between batches; true stops training after the current batch. */
  shouldStop?: () => boolean;
  /** Where the loop keeps its state after each epoch, and resumes from when a run left one. */
  checkpoint?: CheckpointSlot;
}

export interface FitResult {
  history: EpochLogs[];
  bestEpoch: number;
  stoppedEarly: boolean;
  steps: number;
  /** The epoch of the checkpoint this fit resumed from. */
  resumedFrom?: number;
}

/** What one epoch's batches leave: the summed loss and correct count, or nothing when stopped midway. */
type EpochSums = { loss: number; correct: number } | undefined;

export async function fit(o: FitOptions): Promise<FitResult> {
  const xTrain = tf.tensor(o.train.x, [o.train.count, ...o.featureShape]);
  const yTrain = tf.tensor1d(o.train.y, 'int32');
  const variables = o.model.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val);
  const batches = Math.ceil(o.train.count / o.batchSize);
  let history: EpochLogs[] = [];
  let best: BestEpoch | undefined;
  let sinceImprovement = 0;
  let stoppedEarly = false;
  let steps = 0;
  let checkpointing = Boolean(o.checkpoint);
  const better = (a: number, b: number) =>
    o.monitor.endsWith('loss') ? a < b - o.minDelta : a > b + o.minDelta;

  /** One epoch of optimizer steps over the shuffled training split. */
  const trainEpoch = async (epoch: number): Promise<EpochSums> => {
    const order = o.shuffle
      ? permutation(o.train.count, createRng(o.seed, `${o.purpose}:epoch:${epoch}`))
      : Int32Array.from({ length: o.train.count }, (_, i) => i);
    const losses = new BatchLosses(epoch, batches, history.at(-1)?.loss);
    let lossSum: tf.Scalar = tf.scalar(0);
    let correctSum: tf.Scalar = tf.scalar(0);
    try {
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
        losses.push(cost);
        tf.dispose([lossSum, correctSum, correct!, xb, yb, indices]);
        lossSum = nextLoss;
        correctSum = nextCorrect;
        if (o.observer.wantsBatchUpdate()) {
          const seen = Math.min(o.train.count, (b + 1) * o.batchSize);
          const [loss, correct] = await Promise.all([lossSum.data(), correctSum.data()]);
          await losses.check(loss[0]);
          o.observer.batchEnd(b + 1, batches, loss[0] / seen, correct[0] / seen);
        }
        // A partial epoch is dropped: checkpoints are taken at epoch boundaries only.
        if (o.shouldStop?.() && b < batches - 1) return undefined;
      }
      const [lossTotal, correctTotal] = await Promise.all([lossSum.data(), correctSum.data()]);
      await losses.check(lossTotal[0]);
      return { loss: lossTotal[0], correct: correctTotal[0] };
    } finally {
      tf.dispose([lossSum, correctSum]);
      losses.dispose();
    }
  };

  try {
    let resumedFrom: number | undefined;
    const resumed = o.checkpoint ? await resume(o, variables) : undefined;
    if (resumed) {
      ({ history, best, sinceImprovement, stoppedEarly, steps } = resumed);
      resumedFrom = resumed.epoch;
    }
    for (let epoch = (resumedFrom ?? 0) + 1; epoch <= o.epochs && !stoppedEarly; epoch++) {
      const started = Date.now();
      o.observer.epochStart(epoch, o.epochs, batches);
      // Dropout draws its masks from Math.random: one stream per epoch, derived from the seed, so
      // resuming at any epoch needs no generator state and repeats an uninterrupted run exactly.
      const sums = await withSeededMathRandom(o.seed, `${o.purpose}:epoch:${epoch}:dropout`, () => trainEpoch(epoch));
      if (!sums) break;
      const val = await validate(o);
      const logs: EpochLogs = {
        epoch,
        loss: sums.loss / o.train.count,
        accuracy: sums.correct / o.train.count,
        val_loss: val.loss,
        val_accuracy: val.accuracy,
        seconds: (Date.now() - started) / 1000,
      };
      if (o.validation.count > 0 && !Number.isFinite(val.loss)) {
        throw validationDiverged(epoch, val.loss, logs.loss, history.at(-1)?.val_loss);
      }
      history.push(logs);
      const value = logs[o.monitor];
      let note: string | undefined;
      if (steps >= (o.bestFromStep ?? 0) && (!best || better(value, best.value))) {
        if (best) tf.dispose(best.weights);
        best = { epoch, value, weights: o.restoreBestWeights ? o.model.getWeights().map((w) => tf.clone(w)) : [] };
        sinceImprovement = 0;
        note = `${o.monitor} improved`;
      } else {
        sinceImprovement++;
      }
      o.observer.epochEnd(logs, o.epochs, note);
      await o.callbacks?.afterEpoch?.(logs);
      if (o.patience !== undefined && sinceImprovement >= o.patience && epoch < o.epochs) {
        stoppedEarly = true;
        o.observer.info(`early stopping: no ${o.monitor} improvement for ${o.patience} epochs`);
      }
      if (checkpointing) {
        checkpointing = await saveCheckpoint(o, variables, {
          epoch, epochs: o.epochs, steps, history, best, sinceImprovement, stoppedEarly,
        });
      }
      if (o.shouldStop?.()) break;
    }
    if (best && o.restoreBestWeights && best.epoch !== history.at(-1)?.epoch) {
      o.model.setWeights(best.weights);
      o.observer.info(`restored the weights of epoch ${best.epoch} (best ${o.monitor} ${best.value.toFixed(4)})`);
    }
    return { history, bestEpoch: best?.epoch ?? 0, stoppedEarly, steps, ...(resumedFrom ? { resumedFrom } : {}) };
  } finally {
    tf.dispose([xTrain, yTrain, ...(best?.weights ?? [])]);
  }
}

type Progress = Pick<LoopState, 'epoch' | 'epochs' | 'steps' | 'history' | 'best' | 'sinceImprovement' | 'stoppedEarly'>;

/** Saves the loop's state; false when the optimizer's state cannot be saved (checkpoints are then off). */
async function saveCheckpoint(o: FitOptions, variables: tf.Variable[], progress: Progress): Promise<boolean> {
  let optimizer: NamedTensor[];
  try {
    optimizer = await o.optimizer.getWeights();
  } catch (err) {
    o.observer.info(
      `no checkpoints: tfjs cannot save the state of ${o.optimizer.getClassName()} (${(err as Error).message}), ` +
        'so an interrupted run of this stage starts over',
    );
    return false;
  }
  try {
    const checkpoint = await encodeLoopState({
      ...progress,
      weights: o.model.getWeights(),
      optimizer,
      variables: variables.map((v) => v.name),
      callbacks: o.callbacks?.state?.save(),
    });
    await o.checkpoint!.save(checkpoint);
  } finally {
    // getWeights hands out the optimizer's own variables, and a new tensor for its step count.
    tf.dispose(optimizer.map((w) => w.tensor).filter((t) => !(t instanceof tf.Variable)));
  }
  return true;
}

/** The state of the checkpoint an interrupted run left, loaded into the model, optimizer and callbacks. */
async function resume(o: FitOptions, variables: tf.Variable[]): Promise<LoopState | undefined> {
  const slot = o.checkpoint!;
  const checkpoint = await slot.load();
  if (!checkpoint) return undefined;
  let state: LoopState;
  try {
    state = decodeLoopState(checkpoint);
  } catch (err) {
    await slot.reject((err as Error).message);
    return undefined;
  }
  const mismatch = describeMismatch(state, o, variables);
  if (mismatch) {
    tf.dispose(stateTensors(state));
    await slot.reject(mismatch);
    return undefined;
  }
  try {
    o.model.setWeights(state.weights);
    await o.optimizer.setWeights(renameOptimizerWeights(state.optimizer, state.variables, variables.map((v) => v.name)));
    if (state.callbacks) o.callbacks?.state?.restore(state.callbacks);
  } finally {
    // The model, the optimizer and the callbacks hold their own references now; the best weights stay.
    tf.dispose([...state.weights, ...state.optimizer.map((w) => w.tensor), ...(state.callbacks?.tensors ?? [])]);
  }
  o.observer.info(
    `resuming from the checkpoint of epoch ${state.epoch}/${state.epochs} (${slot.where}); --no-resume starts over`,
  );
  return state;
}

/** Why a checkpoint cannot be this loop's (same fingerprint, so only a bug or an edit gets here). */
function describeMismatch(state: LoopState, o: FitOptions, variables: tf.Variable[]): string | undefined {
  const shapes = (ts: { shape: (number | null)[] }[]) => ts.map((t) => `[${t.shape.join(',')}]`).join(' ');
  if (shapes(state.weights) !== shapes(o.model.weights)) {
    return `its weights (${shapes(state.weights)}) do not fit the model (${shapes(o.model.weights)})`;
  }
  if (state.variables.length !== variables.length) return `it optimised ${state.variables.length} variables, the model has ${variables.length}`;
  if (state.epochs !== o.epochs || state.epoch > o.epochs) return `it is of epoch ${state.epoch}/${state.epochs}, this run has ${o.epochs} epochs`;
  if (Boolean(state.callbacks) !== Boolean(o.callbacks?.state)) return 'it was written by a different kind of training loop';
  return undefined;
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
