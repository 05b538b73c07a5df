import { readFile } from 'node:fs/promises';
import { chooseStoreSpec, openArtifactStore } from '../artifacts/store-spec.js';
import type { BackendChoice } from '../backend/select.js';
import { EXIT_OK, EXIT_STAGE_FAILED, InputError } from '../errors.js';
import { startWorker, submitPipeline } from '../engine/queue.js';
import { JsonLinesReporter } from '../report/json-lines.js';
import { TerminalReporter } from '../report/terminal.js';
import { loadPipeline } from '../spec/pipeline.js';

// `run --executor queue` and `worker`: the library's queue executor (engine/queue.ts) with
// terminal output.

const print = (text: string) => process.stdout.write(`${text}\n`);

export async function queuedRunCommand(args: {
  file: string;
  set: string[];
  store?: string;
  cache: string;
  redis?: string;
  backend?: BackendChoice;
  force: boolean;
  only?: string[];
  sweepId?: string;
  quiet: boolean;
  logFormat: 'text' | 'json';
}): Promise<number> {
  if (!args.redis) throw new InputError('--executor queue needs --redis redis://host:port (the Redis the workers take jobs from)');
  if (args.only?.length) throw new InputError('--only is not supported with --executor queue: the queue runs what the plan needs');
  // The text goes into each job, read once, so the workers run exactly what was submitted.
  const text = await readFile(args.file, 'utf8').catch(() => undefined);
  const pipeline = await loadPipeline(args.file, args.set, text);
  const storeSpec = chooseStoreSpec(args.store, pipeline.store);
  const store = await openArtifactStore(storeSpec, args.cache);
  const json = args.logFormat === 'json';
  // JSON lines are the same events a local run emits (report/json-lines.ts): a sweep reads run-end.
  const jsonReporter = json ? new JsonLinesReporter() : undefined;
  const log = (line: string) => {
    if (jsonReporter) jsonReporter.queue(line);
    else if (!args.quiet) print(line);
  };
  const result = await submitPipeline(pipeline, {
    redis: args.redis,
    text: text ?? '',
    sets: args.set,
    store,
    storeSpec,
    backend: args.backend,
    force: args.force,
    ...(args.sweepId ? { sweep: args.sweepId } : {}),
    log,
  });
  jsonReporter?.runEnd(result.record, store.describe(result.recordPath));
  if (result.failed) {
    process.stderr.write(`error: ${result.record.error}\n`);
    return EXIT_STAGE_FAILED;
  }
  const computed = result.results.filter((r) => r.status === 'ran').length;
  log(`done: ${computed} computed on workers, ${result.plans.length - computed} reused; run ${result.record.id} recorded in ${store.describe(result.recordPath)}`);
  return EXIT_OK;
}

export async function workerCommand(args: {
  redis: string;
  concurrency: number;
  capability: string[];
  backend?: BackendChoice;
  cache: string;
  quiet: boolean;
}): Promise<number> {
  if (!Number.isInteger(args.concurrency) || args.concurrency < 1) {
    throw new InputError(`--concurrency ${args.concurrency}: give a whole number of stages at a time, 1 or more`);
  }
  const unknown = args.capability.filter((c) => c !== 'gpu');
  if (unknown.length) throw new InputError(`--capability ${unknown.join(', ')}: the only capability is "gpu"`);
  const worker = await startWorker({
    redis: args.redis,
    concurrency: args.concurrency,
    capabilities: args.capability,
    backend: args.backend,
    cache: args.cache,
    reporter: () => new TerminalReporter({ quiet: args.quiet }),
    log: (line) => print(`[worker ${process.pid}] ${line}`),
  });
  print(`worker ${worker.name} taking jobs from ${worker.queues.join(', ')} at ${args.redis} (cache ${args.cache})`);
  // Ends on SIGINT/SIGTERM after the running stages finish (BullMQ's close waits for them).
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  print('stopping: finishing the running stages');
  await worker.close();
  return EXIT_OK;
}
