import { relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RunRecord } from '../artifacts/manifest.js';
import type { ArtifactStore } from '../artifacts/store.js';
import { chooseStoreSpec, openArtifactStore } from '../artifacts/store-spec.js';
import type { BackendChoice } from '../backend/select.js';
import { EXIT_OK, InputError } from '../errors.js';
import { planPipeline, runPipeline } from '../engine/run.js';
import { JsonLinesReporter } from '../report/json-lines.js';
import { formatHeadline, formatNumber, formatTable, TerminalReporter } from '../report/terminal.js';
import { loadPipeline, type Pipeline } from '../spec/pipeline.js';
import { pipelineSchema } from '../spec/schema.js';
import { registerAllStageKinds } from '../stages/register-all.js';

interface StoreArgs {
  store?: string;
  cache: string;
}
interface FileArgs extends StoreArgs {
  file: string;
  set: string[];
}

/** The store as a --store argument for another command (a sweep's runs, a workflow's steps). */
export function storeText(cliStore: string | undefined, pipeline: Pipeline): string {
  const spec = chooseStoreSpec(cliStore, pipeline.store);
  return spec.kind === 's3' ? spec.url : (cliStore ?? (relative(process.cwd(), spec.path) || '.'));
}

export const openStore = (args: StoreArgs, pipeline?: Pipeline): Promise<ArtifactStore> =>
  openArtifactStore(chooseStoreSpec(args.store, pipeline?.store), args.cache);
const print = (text = '') => process.stdout.write(`${text}\n`);

export type LogFormat = 'text' | 'json';

export async function runCommand(
  args: FileArgs & { backend?: BackendChoice; force: boolean; resume: boolean; only?: string[]; sweepId?: string; quiet: boolean; logFormat: LogFormat },
): Promise<number> {
  const pipeline = await loadPipeline(args.file, args.set);
  let stops = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    stops++;
    if (stops > 1) process.exit(130);
    process.stderr.write(
      `\n${signal}: stopping after the current batch (again to abort at once); nothing unfinished is published, ` +
        'the last epoch checkpoint is kept for the next run to resume from\n',
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  await runPipeline(pipeline, {
    store: await openStore(args, pipeline),
    force: args.force,
    only: args.only,
    sweep: args.sweepId,
    resume: args.resume,
    backend: args.backend,
    reporter: args.logFormat === 'json' ? new JsonLinesReporter() : new TerminalReporter({ quiet: args.quiet }),
    stopRequested: () => stops > 0,
  });
  return EXIT_OK;
}

export async function validateCommand(args: FileArgs): Promise<number> {
  const pipeline = await loadPipeline(args.file, args.set);
  print(`${args.file}: ok (pipeline "${pipeline.name}", ${pipeline.stages.size} stages: ${pipeline.graph.order.join(' -> ')})`);
  return EXIT_OK;
}

export async function planCommand(args: FileArgs & { force: boolean; only?: string[] }): Promise<number> {
  const pipeline = await loadPipeline(args.file, args.set);
  const plans = await planPipeline(pipeline, { store: await openStore(args, pipeline), force: args.force, only: args.only });
  print(`plan for pipeline "${pipeline.name}" (${args.file}):`);
  printTable(
    ['stage', 'kind', 'action', 'fingerprint', 'why'],
    plans.map((p) => [p.stage, p.kind, p.action === 'reuse' ? `reuse v${p.cached!.version}` : 'run', p.fingerprint.fingerprint.slice(0, 12), p.reason]),
  );
  return EXIT_OK;
}

async function pipelinesIn(store: ArtifactStore, which?: string): Promise<string[]> {
  if (which && /\.(ya?ml|json)$/.test(which)) return [(await loadPipeline(which)).name];
  if (which) return [which];
  return store.listPipelines();
}

export async function runsCommand(args: StoreArgs & { pipeline?: string }): Promise<number> {
  const store = await openStore(args);
  const rows: string[][] = [];
  for (const name of await pipelinesIn(store, args.pipeline)) {
    for (const run of await store.listRuns(name)) {
      const metrics = run.stages
        .filter((s) => s.metrics && (s.status === 'ran' || s.status === 'reused'))
        .map((s) => `${s.stage}: ${formatHeadline(pick(s.metrics!, ['test_accuracy']))}`)
        .filter((s) => !s.endsWith(': '))
        .join('; ');
      rows.push([
        run.id,
        run.pipeline,
        run.status,
        run.durationMs === undefined ? '-' : `${(run.durationMs / 1000).toFixed(1)}s`,
        run.stages.map((s) => `${s.stage}:${s.status}${s.version ? `@v${s.version}` : ''}`).join(' '),
        metrics,
      ]);
    }
  }
  if (!rows.length) {
    print(`no runs recorded in ${store.describe(store.root)}`);
    return EXIT_OK;
  }
  printTable(['run', 'pipeline', 'status', 'duration', 'stages', 'metrics'], rows);
  return EXIT_OK;
}

export async function showCommand(args: StoreArgs & { target: string }): Promise<number> {
  const store = await openStore(args);
  const match = /^(?:([^/@]+)\/)?([^/@]+)(?:@v?(\d+))?$/.exec(args.target);
  if (!match) throw new InputError(`"${args.target}" is not STAGE, STAGE@vN or PIPELINE/STAGE@vN`);
  const [, pipelineName, stage, versionText] = match;
  let pipeline = pipelineName;
  if (!pipeline) {
    const candidates: string[] = [];
    for (const name of await pipelinesIn(store)) {
      if ((await store.listVersions(name, stage)).length) candidates.push(name);
    }
    if (candidates.length !== 1) {
      throw new InputError(
        candidates.length
          ? `stage "${stage}" exists in several pipelines (${candidates.join(', ')}): write PIPELINE/${stage}`
          : `no stored stage "${stage}" in ${store.describe(store.root)}`,
      );
    }
    pipeline = candidates[0];
  }
  const v = await store.openVersion(pipeline, stage, versionText ? Number(versionText) : undefined);
  const m = v.manifest;
  print(`${pipeline}/${stage}@v${v.version} (${m.kind}) ${store.describe(v.dir)}`);
  print(`  fingerprint ${m.fingerprint}`);
  print(`  run ${m.runId}, ${m.timings.startedAt}, ${(m.timings.durationMs / 1000).toFixed(1)}s on ${m.backend}, seed ${m.seed}`);
  print(`  metrics: ${formatHeadline(m.metrics)}`);
  print('  lineage:');
  for (const input of Object.values(m.inputs.stages)) print(`    stage ${input.stage}@v${input.version} [${input.fingerprint.slice(0, 12)}]`);
  for (const [name, data] of Object.entries(m.inputs.data)) {
    print(`    data ${name} [${data.hash.slice(0, 12)}]: ${data.sources.map((s) => `${s.path} (${s.sha256.slice(0, 12)})`).join(', ')}`);
  }
  print('  files:');
  for (const [file, digest] of Object.entries(m.files)) print(`    ${file} ${formatNumber(digest.bytes)} bytes sha256 ${digest.sha256.slice(0, 16)}`);
  print(`  config: ${JSON.stringify(m.config)}`);
  return EXIT_OK;
}

/**
 * A run by id (a unique prefix will do), `latest`, or `latest~N` (N runs before the latest), in one
 * pipeline or, without one, in whichever pipeline of the store has it.
 */
async function findRun(store: ArtifactStore, id: string, pipeline?: string): Promise<RunRecord> {
  const runs: RunRecord[] = [];
  for (const name of await pipelinesIn(store, pipeline)) runs.push(...(await store.listRuns(name)));
  const where = `${pipeline ? `pipeline "${pipeline}" in ` : ''}${store.describe(store.root)}`;
  if (!runs.length) throw new InputError(`no runs recorded for ${where}: run a pipeline first, or pass --store`);
  runs.sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  const back = /^latest(?:~(\d+))?$/.exec(id);
  if (back) {
    const run = runs.at(-1 - Number(back[1] ?? 0));
    if (!run) throw new InputError(`"${id}": only ${runs.length} runs are recorded for ${where}`);
    return run;
  }
  const matches = runs.filter((r) => r.id === id || r.id.startsWith(id));
  if (matches.length === 1) return matches[0];
  if (!matches.length) {
    throw new InputError(
      `no run "${id}" in ${where} (latest: ${runs.slice(-3).map((r) => `${r.pipeline}/${r.id}`).join(', ')}); ` +
        'see `pipeline runs`',
    );
  }
  throw new InputError(
    `run id "${id}" matches ${matches.length} runs (${matches.map((r) => `${r.pipeline}/${r.id}`).join(', ')}): ` +
      'give more of the id, or --pipeline',
  );
}

export async function reportCommand(args: StoreArgs & { run: string; pipeline?: string; open: boolean }): Promise<number> {
  const store = await openStore(args);
  const record = await findRun(store, args.run, args.pipeline);
  const { writeRunReport } = await import('../report/html.js');
  const path = await writeRunReport(store, record);
  // --open prints a URL a terminal makes clickable (and `xdg-open "$(...)"` takes); no browser is started.
  print(args.open ? pathToFileURL(path).href : `report of run ${record.pipeline}/${record.id}: ${store.describe(path)}`);
  return EXIT_OK;
}

export async function diffCommand(args: StoreArgs & { a: string; b: string; pipeline?: string }): Promise<number> {
  const store = await openStore(args);
  const a = await findRun(store, args.a, args.pipeline);
  // B is looked up in A's pipeline, so `diff <id> latest` means that pipeline's latest run.
  const b = await findRun(store, args.b, args.pipeline ?? a.pipeline);
  const { diffRuns, formatRunDiff } = await import('../report/diff.js');
  for (const line of formatRunDiff(await diffRuns(store, a, b))) print(line);
  return EXIT_OK;
}

export async function schemaCommand(): Promise<number> {
  registerAllStageKinds();
  print(JSON.stringify(pipelineSchema(), null, 2));
  return EXIT_OK;
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, o[k]]));
}

function printTable(header: string[], rows: string[][]): void {
  for (const line of formatTable(header, rows)) print(line);
}
