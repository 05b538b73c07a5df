import { connect } from 'node:net';
import { hostname } from 'node:os';
import { DelayedError, FlowProducer, Queue, QueueEvents, Worker, type ConnectionOptions, type FlowJob, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { RunRecord, StageRunRecord } from '../artifacts/manifest.js';
import { openArtifactStore, parseStoreSpec, type StoreSpec } from '../artifacts/store-spec.js';
import type { ArtifactStore } from '../artifacts/store.js';
import type { BackendChoice } from '../backend/select.js';
import { InputError, PipelineError } from '../errors.js';
import { loadPipeline, stagePlacement, type Pipeline, type ResolvedStage } from '../spec/pipeline.js';
import type { EpochLogs, TrainingObserver } from '../train/progress.js';
import type { RunReporter } from './reporter.js';
import { newRunId, newRunRecord, planPipeline, runPipeline, type StagePlan } from './run.js';

// Stages as BullMQ jobs (`run --executor queue`, `pipeline worker`). The submitter plans against the
// store, then enqueues the stages to run as one flow: a stage's job has its input stages' jobs as
// children, so BullMQ starts it only after they completed. A flow is a tree and a stage graph is
// not (two stages may read one), so each stage is the child of its first reader only; a worker that
// picks a stage whose other inputs are not in the store yet puts the job back, delayed, instead of
// failing it. Workers share nothing but Redis and the store: the job carries the file's text.
// Submissions may overlap (a sweep's runs share stages): a worker computes a fingerprint only while
// it holds that fingerprint's lock in Redis; a job that finds it held waits, delayed, and then
// reuses what the holder published.

export const QUEUE_CPU = 'stages';
export const QUEUE_GPU = 'stages-gpu';
/** How long a worker waits before looking again for inputs or a fingerprint another worker is computing. */
const RETRY_MS = 500;

export interface StageJobData {
  /** The pipeline file's path on the submitting machine: messages, and the folder relative paths resolve against. */
  file: string;
  text: string;
  sets: string[];
  stage: string;
  backend?: BackendChoice;
  force: boolean;
  /** The store as the submitter resolved it: s3://bucket/prefix or an absolute folder. */
  store: string;
}

export interface StageJobResult {
  stage: string;
  status: 'ran' | 'reused';
  version: number;
  fingerprint: string;
  worker: string;
  durationMs?: number;
  metrics?: Record<string, unknown>;
}

export type StageProgress =
  | { event: 'start'; worker: string }
  | { event: 'epoch'; worker: string; epoch: number; epochs: number; loss: number; val_accuracy?: number };

/**
 * The queue of a stage and the backend its job names: a stage that needs a GPU (`resources.gpu`, or a
 * GPU backend) goes to the queue only workers with `--capability gpu` take.
 */
export function queueFor(stage: ResolvedStage, fileBackend: BackendChoice, backend?: BackendChoice): { queue: string; backend?: BackendChoice } {
  const placement = stagePlacement(stage, fileBackend, backend);
  return { queue: placement.gpus > 0 ? QUEUE_GPU : QUEUE_CPU, backend: placement.backend };
}

/** redis://[user:password@]host:port[/db] as BullMQ's connection options; bad input names --redis. */
export function redisConnection(url: string): ConnectionOptions & { host: string; port: number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputError(`--redis: "${url}" is not a URL: write redis://host:port (e.g. redis://127.0.0.1:6379)`);
  }
  if (parsed.protocol !== 'redis:' || !parsed.hostname) {
    throw new InputError(`--redis: "${url}" is not a redis:// URL: write redis://host:port (e.g. redis://127.0.0.1:6379)`);
  }
  const db = parsed.pathname.replace(/^\//, '');
  if (db && !/^\d+$/.test(db)) throw new InputError(`--redis: "${url}": the path must be a database number, e.g. redis://host:6379/0`);
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port: Number(parsed.port || 6379),
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    // BullMQ's workers block on Redis; a per-request retry limit would fail those waits.
    maxRetriesPerRequest: null,
  };
}

/**
 * Fails fast, naming the URL, when nothing listens there: ioredis would otherwise retry forever and
 * the command would hang silently.
 */
export async function checkRedisReachable(url: string): Promise<void> {
  const { host, port } = redisConnection(url);
  await new Promise<void>((resolve, reject) => {
    const socket = connect({ host, port });
    const fail = (why: string) => {
      socket.destroy();
      reject(new PipelineError('E_REDIS', `cannot reach Redis at ${url} (${why}): start redis-server there or fix --redis`, 1));
    };
    socket.setTimeout(5000, () => fail('no answer in 5 s'));
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    socket.once('connect', () => {
      socket.end();
      resolve();
    });
  });
}

/** Stalled-job settings: BullMQ's defaults, shortened by tests through the environment. */
function stallOptions() {
  const env = (name: string) => (process.env[name] ? Number(process.env[name]) : undefined);
  return {
    lockDuration: env('TFJS_PIPELINE_QUEUE_LOCK_MS') ?? 30_000,
    stalledInterval: env('TFJS_PIPELINE_QUEUE_STALLED_MS') ?? 30_000,
    maxStalledCount: env('TFJS_PIPELINE_QUEUE_MAX_STALLED') ?? 1,
  };
}

export interface SubmitOptions {
  redis: string;
  text: string;
  sets: string[];
  store: ArtifactStore;
  storeSpec: StoreSpec;
  backend?: BackendChoice;
  force: boolean;
  /** The `pipeline sweep` this run is one of (its record says so). */
  sweep?: string;
  /** One line per event, for the terminal. */
  log: (line: string) => void;
}

export interface SubmitResult {
  plans: StagePlan[];
  results: StageJobResult[];
  /** The first stage that failed, with the worker's message. */
  failed?: { stage: string; message: string };
  /** The run's record, as `pipeline runs` lists it, and where it was written. */
  record: RunRecord;
  recordPath: string;
}

/** Enqueues the stages the plan must run, follows them to the end, records the run, and says how it went. */
export async function submitPipeline(pipeline: Pipeline, options: SubmitOptions): Promise<SubmitResult> {
  await checkRedisReachable(options.redis);
  const connection = redisConnection(options.redis);
  const { store } = options;
  const started = Date.now();
  const submission = newRunId(started);
  const plans = await planPipeline(pipeline, { store, force: options.force });
  const toRun = plans.filter((p) => p.action === 'run');
  options.log(
    `pipeline ${pipeline.name} (${pipeline.file}): ${plans.length} stages, ${toRun.length} to run on workers, ` +
      `${plans.length - toRun.length} cached`,
  );
  for (const p of plans.filter((p) => p.action === 'reuse')) options.log(`• ${p.stage} (${p.kind}): reused v${p.cached!.version}, ${p.reason}`);
  // The same record a local run writes, so `runs`, `show`, `diff` and sweeps see queued runs too.
  const record = newRunRecord(pipeline, { id: submission, started, backend: `queue (${options.backend ?? pipeline.backend})`, force: options.force, sweep: options.sweep });
  record.stages = plans.map((p): StageRunRecord => ({
    stage: p.stage,
    kind: p.kind,
    fingerprint: p.fingerprint.fingerprint,
    reason: p.reason,
    ...(p.cached ? { status: 'reused', version: p.cached.version, metrics: p.cached.manifest.metrics } : { status: 'pending' }),
  }));
  const finish = async (failed?: { stage: string; message: string }, results: StageJobResult[] = []): Promise<SubmitResult> => {
    for (const r of results) {
      Object.assign(record.stages.find((s) => s.stage === r.stage)!, {
        status: r.status,
        version: r.version,
        ...(r.durationMs !== undefined ? { durationMs: r.durationMs } : {}),
        ...(r.metrics ? { metrics: r.metrics } : {}),
      });
    }
    for (const entry of record.stages.filter((s) => s.status === 'pending')) {
      Object.assign(entry, entry.stage === failed?.stage ? { status: 'failed', error: failed.message } : { status: 'skipped' });
    }
    record.status = failed ? 'failed' : 'succeeded';
    if (failed) record.error = `stage "${failed.stage}" failed on a worker: ${failed.message}`;
    record.finishedAt = new Date().toISOString();
    record.durationMs = Date.now() - started;
    return { plans, results, failed, record, recordPath: await store.writeRun(record) };
  };
  if (!toRun.length) return finish();
  await store.writeRun(record);

  const jobId = (stage: string) => `${submission}.${stage}`;
  const stageOf = new Map(toRun.map((p) => [jobId(p.stage), p.stage]));
  const running = new Set(toRun.map((p) => p.stage));
  // Each stage to run hangs under its first reader that also runs; the rest are the flow's roots.
  const owner = new Map<string, string>();
  for (const name of pipeline.graph.order) {
    if (!running.has(name)) continue;
    for (const dep of pipeline.stages.get(name)!.deps) if (running.has(dep) && !owner.has(dep)) owner.set(dep, name);
  }
  const storeText = options.storeSpec.kind === 's3' ? options.storeSpec.url : options.storeSpec.path;
  const flowOf = (stage: string): FlowJob => {
    const { queue, backend } = queueFor(pipeline.stages.get(stage)!, pipeline.backend, options.backend);
    return {
      name: stage,
      queueName: queue,
      data: {
        file: pipeline.file,
        text: options.text,
        sets: options.sets,
        stage,
        ...(backend ? { backend } : {}),
        force: options.force,
        store: storeText,
      } satisfies StageJobData,
      // A stage error is the same on every worker: no retries. A dead worker is BullMQ's stall
      // check's business (maxStalledCount), not an attempt.
      opts: { jobId: jobId(stage), attempts: 1, failParentOnFailure: true },
      children: [...owner].filter(([, reader]) => reader === stage).map(([dep]) => flowOf(dep)),
    };
  };
  const roots = toRun.map((p) => p.stage).filter((s) => !owner.has(s));
  const queueNames = [QUEUE_CPU, QUEUE_GPU];

  const events = queueNames.map((name) => new QueueEvents(name, { connection }));
  const queues = queueNames.map((name) => new Queue(name, { connection }));
  const flows = new FlowProducer({ connection });
  const results: StageJobResult[] = [];
  try {
    await Promise.all(events.map((e) => e.waitUntilReady()));
    const done = new Promise<{ stage: string; message: string } | undefined>((resolve) => {
      const mine = (id: string) => stageOf.get(id);
      for (const queueEvents of events) {
        queueEvents.on('progress', ({ jobId: id, data }) => {
          const stage = mine(id);
          const p = data as StageProgress;
          if (!stage || typeof p !== 'object') return;
          if (p.event === 'start') options.log(`▶ ${stage}: started on worker ${p.worker}`);
          else if (p.event === 'epoch') {
            const acc = p.val_accuracy === undefined ? '' : ` val_accuracy ${p.val_accuracy.toFixed(4)}`;
            options.log(`  ${stage}: epoch ${p.epoch}/${p.epochs} loss ${p.loss.toFixed(4)}${acc} (worker ${p.worker})`);
          }
        });
        queueEvents.on('stalled', ({ jobId: id }) => {
          const stage = mine(id);
          if (stage) options.log(`⟲ ${stage}: its worker stopped answering; the job is back in the queue for another`);
        });
        queueEvents.on('completed', ({ jobId: id, returnvalue }) => {
          const stage = mine(id);
          if (!stage) return;
          const r = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as StageJobResult;
          results.push(r);
          options.log(`✔ ${stage}: v${r.version} ${r.status === 'ran' ? 'computed' : 'reused'} on worker ${r.worker} [${r.fingerprint.slice(0, 12)}]`);
          if (results.length === toRun.length) resolve(undefined);
        });
        queueEvents.on('failed', ({ jobId: id, failedReason }) => {
          const stage = mine(id);
          if (!stage) return;
          options.log(`✖ ${stage}: failed: ${failedReason}`);
          resolve({ stage, message: failedReason });
        });
      }
    });
    await flows.addBulk(roots.map(flowOf));
    const failed = await done;
    if (failed) {
      // Readers of the failed stage that wait for it (delayed, or waiting for children) would wait
      // forever: take them out. A job a worker holds cannot be removed and finishes on its own.
      for (const id of stageOf.keys()) for (const queue of queues) await queue.remove(id, { removeChildren: true }).catch(() => undefined);
    }
    return await finish(failed, results);
  } catch (err) {
    // Redis gone mid-run, say: the record must not stay "running" forever.
    Object.assign(record, { status: 'failed', error: (err as Error).message, finishedAt: new Date().toISOString(), durationMs: Date.now() - started });
    await store.writeRun(record).catch(() => undefined);
    throw err;
  } finally {
    await Promise.allSettled([...events.map((e) => e.close()), ...queues.map((q) => q.close()), flows.close()]);
  }
}

export interface WorkerOptions {
  redis: string;
  concurrency: number;
  capabilities: string[];
  /** Used for jobs that name no backend (the file's backend otherwise). */
  backend?: BackendChoice;
  /** The local cache folder in front of an s3:// store. */
  cache: string;
  reporter: (stage: string) => RunReporter;
  log: (line: string) => void;
}

export interface RunningWorker {
  name: string;
  queues: string[];
  close(): Promise<void>;
}

/** Takes stage jobs until closed: each is `runPipeline(only: [stage])` on the job's store. */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  await checkRedisReachable(options.redis);
  const connection = redisConnection(options.redis);
  const name = `${hostname()}:${process.pid}`;
  const stall = stallOptions();
  const lockDuration = stall.lockDuration;
  const locks = new FingerprintLocks(new Redis(connection), name, lockDuration);
  const queues = [QUEUE_CPU, ...(options.capabilities.includes('gpu') ? [QUEUE_GPU] : [])];
  const later = async (job: Job, token: string | undefined): Promise<never> => {
    await job.moveToDelayed(Date.now() + RETRY_MS, token);
    throw new DelayedError();
  };
  const process_ = async (job: Job<StageJobData, StageJobResult>, token?: string): Promise<StageJobResult> => {
    const data = job.data;
    const pipeline = await loadPipeline(data.file, data.sets, data.text);
    const store = await openArtifactStore(parseStoreSpec(data.store, `job ${job.id}: store`), options.cache);
    let plan: StagePlan;
    try {
      [plan] = await planPipeline(pipeline, { store, only: [data.stage], force: data.force });
    } catch (err) {
      if (!(err instanceof PipelineError && err.code === 'E_MISSING_INPUT')) throw err;
      // An input another worker is still computing (this stage is not its child in the flow).
      return later(job, token);
    }
    const lockKey = `${pipeline.name}/${data.stage}/${plan.fingerprint.fingerprint}`;
    if (plan.action === 'run' && !(await locks.acquire(lockKey))) return later(job, token);
    try {
      await job.updateProgress({ event: 'start', worker: name } satisfies StageProgress);
      options.log(`${data.stage} (job ${job.id}): started`);
      const reporter = withEpochProgress(options.reporter(data.stage), (logs, epochs) => {
        // tfjs's CPU kernels resolve their awaits as microtasks, so BullMQ's lock-renewal timer may
        // not fire for a whole training: renew here, or a long stage looks stalled and runs twice.
        if (token) void job.extendLock(token, lockDuration).catch(() => undefined);
        void locks.extend(lockKey);
        void job
          .updateProgress({ event: 'epoch', worker: name, epoch: logs.epoch, epochs, loss: logs.loss, val_accuracy: logs.val_accuracy } satisfies StageProgress)
          .catch(() => undefined);
      });
      // --force was applied to the plan above; a job delayed behind another computing the same
      // fingerprint must then reuse that version, not compute it again.
      const force = data.force && plan.action === 'run';
      const record = await runPipeline(pipeline, { store, only: [data.stage], force, backend: data.backend ?? options.backend, reporter });
      const entry = record.stages.find((s) => s.stage === data.stage)!;
      options.log(`${data.stage} (job ${job.id}): v${entry.version} ${entry.status}`);
      return {
        stage: data.stage,
        status: entry.status as 'ran' | 'reused',
        version: entry.version!,
        fingerprint: entry.fingerprint ?? plan.fingerprint.fingerprint,
        worker: name,
        ...(entry.durationMs !== undefined ? { durationMs: entry.durationMs } : {}),
        ...(entry.metrics ? { metrics: entry.metrics } : {}),
      };
    } catch (err) {
      options.log(`${data.stage} (job ${job.id}): failed: ${(err as Error).message}`);
      throw err;
    } finally {
      if (plan.action === 'run') await locks.release(lockKey);
    }
  };
  const workers = queues.map(
    (q) => new Worker<StageJobData, StageJobResult>(q, process_, { connection, concurrency: options.concurrency, ...stall }),
  );
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    name,
    queues,
    close: async () => {
      await Promise.allSettled(workers.map((w) => w.close()));
      await locks.close();
    },
  };
}

/**
 * Per-fingerprint locks in Redis, so that of two jobs for the same version (overlapping
 * submissions, a sweep) one computes and the other reuses. Each expires unless renewed (per epoch,
 * as the job's own lock), so a dead worker's lock frees itself.
 */
class FingerprintLocks {
  constructor(
    private readonly redis: Redis,
    private readonly owner: string,
    private readonly ttlMs: number,
  ) {}

  private key(name: string): string {
    return `tfjs-pipeline:lock:${name}`;
  }

  async acquire(name: string): Promise<boolean> {
    return (await this.redis.set(this.key(name), this.owner, 'PX', this.ttlMs, 'NX')) === 'OK';
  }

  async extend(name: string): Promise<void> {
    await this.redis
      .eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0", 1, this.key(name), this.owner, this.ttlMs)
      .catch(() => undefined);
  }

  async release(name: string): Promise<void> {
    await this.redis
      .eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0", 1, this.key(name), this.owner)
      .catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => undefined);
  }
}

/** `reporter`, with each finished epoch also passed to `onEpoch` (the job's progress). */
function withEpochProgress(reporter: RunReporter, onEpoch: (logs: EpochLogs, epochs: number) => void): RunReporter {
  return new Proxy(reporter, {
    get(target, key, receiver) {
      if (key !== 'observerFor') {
        const value = Reflect.get(target, key, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      }
      return (stage: string): TrainingObserver => {
        const inner = target.observerFor(stage);
        return {
          epochStart: (...a) => inner.epochStart(...a),
          wantsBatchUpdate: () => inner.wantsBatchUpdate(),
          batchEnd: (...a) => inner.batchEnd(...a),
          epochEnd: (logs, epochs, note) => {
            inner.epochEnd(logs, epochs, note);
            onEpoch(logs, epochs);
          },
          info: (m) => inner.info(m),
        };
      };
    },
  });
}
