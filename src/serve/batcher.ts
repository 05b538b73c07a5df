import { ServeError } from './status.js';

// Server-side batching of concurrent requests to one model version, with TensorFlow Serving's
// knobs and meaning (batching_parameters: max_batch_size, batch_timeout_micros,
// max_enqueued_batches; one batch thread):
//
// - A batch closes when it holds max_batch_size rows or its oldest request has waited
//   batch_timeout_micros; it runs as soon as the model is free. With a timeout of 0 a batch
//   takes whatever has arrived by the time the model is free: no request waits for company,
//   and under load everything that queued during one execution forms the next batch.
// - The tfjs cpu and wasm backends compute on the event loop, so while one batch runs no
//   request is even parsed; the next batch is formed on the following turn (setImmediate runs
//   after the poll phase has read every socket that became readable meanwhile).
// - A request larger than max_batch_size runs alone (TF Serving would refuse it without
//   enable_large_batch_splitting); requests are never split across batches.
// - Requests whose deadline passed while queued are answered 504 without running.

export interface BatchOptions {
  maxBatchSize: number;
  batchTimeoutMicros: number;
  /** Queue bound: at most maxEnqueuedBatches x maxBatchSize rows wait; more is answered 503. */
  maxEnqueuedBatches: number;
}

export const DEFAULT_BATCHING: BatchOptions = { maxBatchSize: 32, batchTimeoutMicros: 0, maxEnqueuedBatches: 64 };

export interface BatchResult {
  /** Full output shape, batch first. */
  shape: number[];
  values: Float32Array;
}

/** One model execution over `rows` stacked examples from `requests` requests. */
export type RunBatch = (values: Float32Array, rows: number, requests: number) => Promise<BatchResult>;

interface Task {
  values: Float32Array;
  rows: number;
  enqueuedAt: number;
  deadline: number;
  resolve: (r: BatchResult) => void;
  reject: (e: unknown) => void;
}

export class Batcher {
  private queue: Task[] = [];
  private queuedRows = 0;
  private running = false;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly run: RunBatch,
    private readonly exampleSize: number,
    private readonly options: BatchOptions,
    /** Names the model version in errors. */
    private readonly where: string,
  ) {}

  get pending(): number {
    return this.queue.length;
  }

  submit(values: Float32Array, rows: number, deadline = Infinity): Promise<BatchResult> {
    const limit = this.options.maxBatchSize * this.options.maxEnqueuedBatches;
    if (this.queuedRows + rows > limit && this.queue.length > 0) {
      return Promise.reject(
        new ServeError(
          'UNAVAILABLE',
          `the batch queue of ${this.where} is full (rows waiting: ${this.queuedRows}, limit: ${limit} = --max-batch-size x ` +
            '--max-enqueued-batches); retry later, or raise --max-enqueued-batches',
        ),
      );
    }
    return new Promise<BatchResult>((resolve, reject) => {
      this.queue.push({ values, rows, enqueuedAt: performance.now(), deadline, resolve, reject });
      this.queuedRows += rows;
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.running || this.scheduled || this.queue.length === 0) return;
    const waitMs = this.options.batchTimeoutMicros / 1000;
    const due = this.queue[0].enqueuedAt + waitMs - performance.now();
    if (this.queuedRows >= this.options.maxBatchSize || due <= 0) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.runNext();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, due);
    }
  }

  private async runNext(): Promise<void> {
    if (this.running || this.queue.length === 0) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const now = performance.now();
    const batch: Task[] = [];
    let rows = 0;
    while (this.queue.length) {
      const next = this.queue[0];
      if (next.deadline <= now) {
        this.take();
        next.reject(new ServeError('DEADLINE_EXCEEDED', `the request timed out while queued for ${this.where} (--request-timeout-ms)`));
        continue;
      }
      if (batch.length && rows + next.rows > this.options.maxBatchSize) break;
      batch.push(this.take());
      rows += next.rows;
    }
    if (batch.length === 0) return;
    this.running = true;
    try {
      let values: Float32Array;
      if (batch.length === 1) {
        values = batch[0].values;
      } else {
        values = new Float32Array(rows * this.exampleSize);
        let offset = 0;
        for (const t of batch) {
          values.set(t.values, offset);
          offset += t.values.length;
        }
      }
      const out = await this.run(values, rows, batch.length);
      const per = out.values.length / rows;
      let start = 0;
      for (const t of batch) {
        t.resolve({ shape: [t.rows, ...out.shape.slice(1)], values: out.values.subarray(start * per, (start + t.rows) * per) });
        start += t.rows;
      }
    } catch (err) {
      for (const t of batch) t.reject(err);
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private take(): Task {
    const t = this.queue.shift()!;
    this.queuedRows -= t.rows;
    return t;
  }
}
