import * as tf from '@tensorflow/tfjs';
import { DivergenceError } from '../errors.js';

// A diverging run is caught where the loop reads values back anyway (the epoch's end, a progress
// bar's update), never by a readback per batch, which would stall a GPU every step: the losses of
// the epoch's batches wait on the device, and when the running sum read there is not finite they
// are read once to name the first batch that went wrong. Losses are >= 0 (cross-entropies, squared
// errors, the distillation loss), so the sum is finite exactly when every batch loss is.

const HINT = 'lower the learning rate or check the data for extreme values; nothing of this stage was published';
/** Batch losses are stacked into one tensor every CHUNK batches, so an epoch holds few tensors. */
const CHUNK = 256;

export class BatchLosses {
  private chunks: tf.Tensor1D[] = [];
  private pending: tf.Scalar[] = [];

  constructor(
    private readonly epoch: number,
    private readonly batches: number,
    /** The previous epoch's mean training loss, the last good figure when batch 1 fails. */
    private readonly previousLoss?: number,
  ) {}

  /** Takes ownership of the batch's loss. */
  push(loss: tf.Scalar): void {
    this.pending.push(loss);
    if (this.pending.length === CHUNK) {
      this.chunks.push(tf.stack(this.pending) as tf.Tensor1D);
      tf.dispose(this.pending);
      this.pending = [];
    }
  }

  /** Throws a DivergenceError naming the first bad batch when `runningSum` (read by the caller) is not finite. */
  async check(runningSum: number): Promise<void> {
    if (Number.isFinite(runningSum)) return;
    const all = tf.tidy(() => tf.concat([...this.chunks, ...this.pending.map((p) => tf.reshape(p, [1]))]));
    const losses = await all.data();
    all.dispose();
    const bad = losses.findIndex((v) => !Number.isFinite(v));
    const where = `training diverged in epoch ${this.epoch}`;
    if (bad < 0) {
      throw new DivergenceError(
        `${where}: the epoch's summed loss overflowed to ${runningSum} after ${losses.length} batches, each finite ` +
          `(the largest ${Array.from(losses).reduce((m, v) => Math.max(m, v), 0).toExponential(2)}): the loss is exploding; ${HINT}`,
      );
    }
    const lastGood =
      bad > 0
        ? `last finite loss ${formatLoss(losses[bad - 1])} at batch ${bad}`
        : this.previousLoss !== undefined
          ? `last finite loss ${formatLoss(this.previousLoss)}, the mean of epoch ${this.epoch - 1}`
          : 'no finite loss before it';
    throw new DivergenceError(`${where}, batch ${bad + 1} of ${this.batches}: the loss is ${losses[bad]} (${lastGood}); ${HINT}`);
  }

  dispose(): void {
    tf.dispose([...this.chunks, ...this.pending]);
    this.chunks = [];
    this.pending = [];
  }
}

/** A validation loss that is not finite although the epoch's training loss was. */
export function validationDiverged(epoch: number, valLoss: number, trainLoss: number, previousValLoss?: number): DivergenceError {
  return new DivergenceError(
    `training diverged in epoch ${epoch}: the validation loss is ${valLoss} after it, though the training loss was ` +
      `${formatLoss(trainLoss)}` +
      (previousValLoss !== undefined ? ` (last finite validation loss ${formatLoss(previousValLoss)}, epoch ${epoch - 1})` : '') +
      `; the last steps made the weights or the predictions overflow: ${HINT}`,
  );
}

/** Four decimals as the epoch lines show losses, or an exponent for the huge ones of a run going wrong. */
function formatLoss(v: number): string {
  return Math.abs(v) < 1e6 ? v.toFixed(4) : v.toExponential(3);
}
