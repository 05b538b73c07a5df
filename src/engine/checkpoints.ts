import type { CheckpointArea } from '../artifacts/store.js';
import { IntegrityError } from '../errors.js';
import type { CheckpointSlot } from '../train/checkpoint.js';

// The engine's side of a running stage's checkpoints: one slot per training loop of the stage, a
// warning (never a failure) for a checkpoint that cannot be resumed from, and what was resumed and
// saved, for the run record and the message of an interrupted run.

export interface SavedEpoch {
  loop: string;
  epoch: number;
  epochs: number;
}

export class StageCheckpoints {
  /** The epoch each loop resumed from, by loop name. */
  readonly resumedFromEpoch: Record<string, number> = {};
  /** The newest checkpoint on disk: the one the next run would resume from. */
  latest?: SavedEpoch;

  constructor(
    private readonly area: CheckpointArea,
    private readonly stage: string,
    private readonly describe: (path: string) => string,
    private readonly warn: (message: string) => void,
  ) {}

  slot(loop: string): CheckpointSlot {
    const reject = (why: string) => {
      delete this.resumedFromEpoch[loop];
      if (this.latest?.loop === loop) this.latest = undefined;
      // Left in place: the loop's first checkpoint replaces it, and a run that ends sooner warns again.
      this.warn(`${why}; stage "${this.stage}" trains from the start instead`);
    };
    return {
      where: this.describe(this.area.path(loop)),
      load: async () => {
        try {
          const checkpoint = await this.area.read(loop);
          if (checkpoint) {
            this.resumedFromEpoch[loop] = checkpoint.epoch;
            this.latest = { loop, epoch: checkpoint.epoch, epochs: checkpoint.epochs };
          }
          return checkpoint;
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err;
          reject(err.message);
          return undefined;
        }
      },
      save: async (checkpoint) => {
        await this.area.write(loop, checkpoint);
        this.latest = { loop, epoch: checkpoint.epoch, epochs: checkpoint.epochs };
      },
      reject: async (reason) => reject(`checkpoint ${this.describe(this.area.path(loop))} cannot be resumed from: ${reason}`),
    };
  }

  /** For the run record and the manifest: undefined when nothing was resumed. */
  resumed(): Record<string, number> | undefined {
    return Object.keys(this.resumedFromEpoch).length ? { ...this.resumedFromEpoch } : undefined;
  }
}
