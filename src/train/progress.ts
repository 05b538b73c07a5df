// What the training loop tells whoever watches: per-epoch logs always, per-batch updates when the
// watcher wants them (a progress bar), so the loop reads values back from the device only then.

export interface EpochLogs {
  epoch: number;
  loss: number;
  accuracy: number;
  val_loss: number;
  val_accuracy: number;
  seconds: number;
  [metric: string]: number;
}

export interface TrainingObserver {
  epochStart(epoch: number, epochs: number, batches: number): void;
  /** Whether batchEnd wants the running loss (reading it costs a device sync). */
  wantsBatchUpdate(): boolean;
  /** Running means over the epoch's batches so far: loss and training accuracy. */
  batchEnd(batch: number, batches: number, runningLoss: number, runningAccuracy: number): void;
  epochEnd(logs: EpochLogs, epochs: number, note?: string): void;
  info(message: string): void;
}

export const silentObserver: TrainingObserver = {
  epochStart() {},
  wantsBatchUpdate: () => false,
  batchEnd() {},
  epochEnd() {},
  info() {},
};
