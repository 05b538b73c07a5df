import { resolve } from 'node:path';
import type { RunRecord } from '../src/artifacts/manifest.js';
import { LocalArtifactStore } from '../src/artifacts/store.js';
import { BACKEND_CHOICES, type BackendChoice } from '../src/backend/select.js';
import { runPipeline } from '../src/engine/run.js';
import { TerminalReporter } from '../src/report/terminal.js';
import { loadPipeline, type Pipeline } from '../src/spec/pipeline.js';

// What the benchmarks that run a whole pipeline file share (bench/distill, bench/compress): the
// same flags as `pipeline run`, and a run through the same engine, whose stored versions they then
// read their figures from.

/** node:util parseArgs options; spread them and add a benchmark's own. */
export function pipelineBenchOptions(defaultFile: string) {
  return {
    file: { type: 'string', default: defaultFile },
    set: { type: 'string', multiple: true, default: [] as string[] },
    backend: { type: 'string' },
    store: { type: 'string', default: 'artifacts' },
    out: { type: 'string' },
    force: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
  } as const;
}

export interface PipelineBenchArgs {
  file: string;
  set: string[];
  backend?: string;
  store: string;
  force: boolean;
  quiet: boolean;
}

export interface PipelineBenchRun {
  pipeline: Pipeline;
  store: LocalArtifactStore;
  record: RunRecord;
  wallSeconds: number;
}

/** Loads the file, lets the benchmark check it (`check` throws), runs it and times the run. */
export async function runPipelineBench(
  args: PipelineBenchArgs,
  check: (pipeline: Pipeline) => void = () => {},
): Promise<PipelineBenchRun> {
  if (args.backend !== undefined && !(BACKEND_CHOICES as readonly string[]).includes(args.backend)) {
    throw new Error(`--backend ${args.backend}: expected one of ${BACKEND_CHOICES.join(', ')}`);
  }
  const pipeline = await loadPipeline(args.file, args.set);
  check(pipeline);
  const store = new LocalArtifactStore(resolve(args.store));
  const started = Date.now();
  const record = await runPipeline(pipeline, {
    store,
    backend: args.backend as BackendChoice | undefined,
    force: args.force,
    reporter: new TerminalReporter({ quiet: args.quiet }),
  });
  return { pipeline, store, record, wallSeconds: (Date.now() - started) / 1000 };
}
