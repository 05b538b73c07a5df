import yargs, { type Argv } from 'yargs';
import { EXIT_BAD_INPUT, EXIT_STAGE_FAILED, PipelineError } from '../errors.js';
import { BACKEND_CHOICES } from '../backend/select.js';

// yargs commands only: parse, call the library, print. Each command lazy-imports its
// implementation so `pipeline --help` starts fast, and one wrapper maps errors to exit codes
// (stack traces only with --verbose).

interface Common {
  verbose: boolean;
  store?: string;
  cache: string;
}

type Handler<A> = (args: A & Common) => Promise<number>;

function wrap<A>(handler: Handler<A>) {
  return async (args: A & Common) => {
    let code: number;
    try {
      code = await handler(args);
    } catch (err) {
      code = reportError(err, args.verbose);
    }
    // Exit explicitly: a WebGPU device or a pending timer would otherwise keep Node alive.
    process.exit(code);
  };
}

function reportError(err: unknown, verbose: boolean): number {
  if (err instanceof PipelineError) {
    process.stderr.write(`error: ${err.message}\n`);
    if (verbose) process.stderr.write(`${err.stack}\n${err.cause ? `cause: ${(err.cause as Error).stack}\n` : ''}`);
    return err.exitCode;
  }
  process.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`);
  if (verbose) process.stderr.write(`${(err as Error)?.stack}\n`);
  else process.stderr.write('(run with --verbose for the stack trace)\n');
  return EXIT_STAGE_FAILED;
}

const withFileAndSets = <T>(y: Argv<T>) =>
  y
    .positional('file', { type: 'string', demandOption: true, describe: 'pipeline file (YAML or JSON)' })
    .option('set', {
      type: 'string',
      array: true,
      default: [] as string[],
      describe: 'override a value: stage.key=value (repeatable), recorded in the run',
    });

const withSelection = <T>(y: Argv<T>) =>
  y
    .option('pipeline', { type: 'string', describe: 'only this pipeline' })
    .option('stage', { type: 'string', describe: 'only this stage: STAGE or STAGE@vN' });

/** Where `run` and `sweep` compute stages: here, or on `pipeline worker`s through Redis. */
const EXECUTOR_OPTIONS = {
  executor: {
    choices: ['local', 'queue'] as const,
    default: 'local' as const,
    describe: 'queue: enqueue the stages for `pipeline worker`s (BullMQ on --redis)',
  },
  redis: { type: 'string', describe: 'with --executor queue: redis://host:port' },
} as const;

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('pipeline')
    .usage('$0 <command> [options]')
    .option('verbose', { type: 'boolean', default: false, describe: 'show stack traces' })
    .option('store', {
      type: 'string',
      describe: "artifact store: a folder or s3://bucket/prefix (default: the pipeline file's store:, else artifacts)",
    })
    .option('cache', { type: 'string', default: 'artifacts', describe: 'with an s3:// store: the local folder in front of it' })
    .command(
      'run <file>',
      'run a pipeline: stages whose inputs have not changed are reused',
      (y) =>
        withFileAndSets(y)
          .option('backend', { choices: BACKEND_CHOICES, describe: "tfjs backend (overrides the file's)" })
          .option('force', { type: 'boolean', default: false, describe: 'rerun every stage, even when cached' })
          .option('only', {
            type: 'string',
            array: true,
            describe: 'run only this stage (repeatable); the stages it reads must be in the store already',
          })
          .options(EXECUTOR_OPTIONS)
          .option('sweep-id', { type: 'string', describe: 'record the run as one of this sweep (set by `pipeline sweep`)', hidden: true })
          .option('resume', {
            type: 'boolean',
            default: true,
            describe: 'continue a stage an interrupted run left from its last epoch checkpoint (--no-resume: start it over)',
          })
          .option('quiet', { type: 'boolean', default: false, describe: 'print only errors' })
          .option('log-format', {
            choices: ['text', 'json'] as const,
            default: 'text' as const,
            describe: 'json: one JSON object per line and event on stdout, for CI',
          }),
      wrap(async (args) =>
        args.executor === 'queue' ? (await import('./queue.js')).queuedRunCommand(args) : (await import('./commands.js')).runCommand(args),
      ),
    )
    .command(
      'worker',
      'take stage jobs of `run --executor queue` from Redis and run them (until Ctrl-C)',
      (y) =>
        y
          .option('redis', { type: 'string', demandOption: true, describe: 'redis://host:port' })
          .option('concurrency', { type: 'number', default: 1, describe: 'stages run at a time in this process' })
          .option('capability', { type: 'string', array: true, default: [] as string[], describe: 'gpu: also take GPU stages' })
          .option('backend', { choices: BACKEND_CHOICES, describe: "tfjs backend for jobs that name none (default: the file's)" })
          .option('quiet', { type: 'boolean', default: false, describe: 'print only job lines' }),
      wrap(async (args) => (await import('./queue.js')).workerCommand(args)),
    )
    .command(
      'validate <file>',
      'check a pipeline file (schema and stage graph); exit 2 on any problem',
      (y) => withFileAndSets(y),
      wrap(async (args) => (await import('./commands.js')).validateCommand(args)),
    )
    .command(
      'plan <file>',
      'show which stages would run and why, and which are cached',
      (y) =>
        withFileAndSets(y)
          .option('force', { type: 'boolean', default: false })
          .option('only', { type: 'string', array: true, describe: 'plan only this stage (repeatable), as `run --only` would' }),
      wrap(async (args) => (await import('./commands.js')).planCommand(args)),
    )
    .command(
      'runs [pipeline]',
      'list recorded runs (status, duration, key metrics)',
      (y) => y.positional('pipeline', { type: 'string', describe: 'pipeline name or file (default: all)' }),
      wrap(async (args) => (await import('./commands.js')).runsCommand(args)),
    )
    .command(
      'show <target>',
      "a stage version's metrics and lineage: STAGE, STAGE@vN or PIPELINE/STAGE@vN",
      (y) => y.positional('target', { type: 'string', demandOption: true }),
      wrap(async (args) => (await import('./commands.js')).showCommand(args)),
    )
    .command(
      'report <run>',
      "rebuild a run's HTML report (charts, metrics, lineage): RUN-ID, a unique prefix, or latest",
      (y) =>
        y
          .positional('run', { type: 'string', demandOption: true, describe: 'run id, unique prefix, latest or latest~N' })
          .option('pipeline', { type: 'string', describe: 'pipeline name or file (default: any pipeline in the store)' })
          .option('open', { type: 'boolean', default: false, describe: "print the report's file:// URL" }),
      wrap(async (args) => (await import('./commands.js')).reportCommand(args)),
    )
    .command(
      'diff <a> <b>',
      'what changed between two runs: overrides, resolved stage configs, versions, metric deltas',
      (y) =>
        y
          .positional('a', { type: 'string', demandOption: true, describe: 'run id, unique prefix, latest or latest~N' })
          .positional('b', { type: 'string', demandOption: true, describe: 'run id, unique prefix, latest or latest~N' })
          .option('pipeline', { type: 'string', describe: 'pipeline name or file (default: any pipeline in the store)' }),
      wrap(async (args) => (await import('./commands.js')).diffCommand(args)),
    )
    .command(
      'serve <base>',
      "serve exported models with TensorFlow Serving's REST API (new versions load without a restart)",
      (y) =>
        y
          .positional('base', { type: 'string', demandOption: true, describe: 'folder of <model>/<version>/ (e.g. artifacts/serving)' })
          .option('port', { type: 'number', default: 8501, describe: 'TCP port (0: any free port)' })
          .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to listen on (0.0.0.0: every interface)' })
          .option('model-name', { type: 'string', array: true, describe: 'serve only these models (or name the one model of a base path)' })
          .option('version-policy', { choices: ['latest', 'all', 'specific'] as const, default: 'latest' as const, describe: 'versions to load' })
          .option('num-versions', { type: 'number', default: 1, describe: 'latest: how many of the newest versions' })
          .option('versions', { type: 'string', describe: 'specific: version numbers, e.g. 1,3' })
          .option('version-label', { type: 'string', array: true, default: [] as string[], describe: '[MODEL:]LABEL=VERSION for /labels/LABEL' })
          .option('poll-seconds', { type: 'number', default: 1, describe: 'seconds between scans of the base folder (0: never)' })
          .option('batching', { type: 'boolean', default: true, describe: 'merge concurrent requests into one model run (--no-batching)' })
          .option('max-batch-size', { type: 'number', default: 32, describe: 'rows per merged model run' })
          .option('batch-timeout-micros', { type: 'number', default: 0, describe: 'longest wait for a batch to fill (0: run when the model is free)' })
          .option('max-enqueued-batches', { type: 'number', default: 64, describe: 'queue bound in batches; beyond it 503' })
          .option('backend', { choices: BACKEND_CHOICES, default: 'auto' as const, describe: 'tfjs backend' })
          .option('api-key-file', { type: 'string', describe: 'require an API key from this file (one per line)' })
          .option('hmac-key-file', { type: 'string', describe: 'accept HMAC-signed requests with a key from this file' })
          .option('hmac-max-skew-seconds', { type: 'number', default: 300, describe: 'oldest (and newest) x-timestamp accepted' })
          .option('public-metrics', { type: 'boolean', default: false, describe: 'serve /metrics without credentials' })
          .option('max-body-bytes', { type: 'number', default: 8 * 1024 * 1024, describe: 'larger request bodies get 413' })
          .option('request-timeout-ms', { type: 'number', default: 30000, describe: 'receive-and-predict deadline per request (504)' })
          .option('quiet', { type: 'boolean', default: false, describe: 'print only warnings and errors' }),
      wrap(async (args) => (await import('./serve.js')).serveCommand(args)),
    )
    .command(
      'gc [pipeline]',
      'remove stage versions no longer needed (keeps the newest N per stage and the newest successful run\'s)',
      (y) =>
        y
          .positional('pipeline', { type: 'string', describe: 'pipeline name or file (default: every pipeline in the store)' })
          .option('keep', { type: 'number', default: 3, describe: 'newest versions kept per stage' })
          .option('dry-run', { type: 'boolean', default: false, describe: 'print what would be removed; remove nothing' }),
      wrap(async (args) => (await import('./gc.js')).gcCommand(args)),
    )
    .command(
      'push',
      'upload local stage versions the remote store lacks',
      (y) =>
        withSelection(y).option('remote', {
          type: 'string',
          describe: 's3://bucket/prefix (default: --store, when that is one; the local store is then --cache)',
        }),
      wrap(async (args) => (await import('./sync.js')).pushCommand(args)),
    )
    .command(
      'pull [file]',
      "download stage versions from the remote store: all, the selected ones, or those a pipeline file's plan reuses",
      (y) =>
        withSelection(y)
          .positional('file', { type: 'string', describe: 'pipeline file: pull the versions its run would reuse' })
          .option('remote', { type: 'string', describe: "s3://bucket/prefix (default: --store or the file's store:)" })
          .option('set', { type: 'string', array: true, default: [] as string[], describe: 'with FILE: override a value, as for run' }),
      wrap(async (args) => (await import('./sync.js')).pullCommand(args)),
    )
    .command(
      'sweep <file>',
      'run every combination of --grid values as a run of its own, N at a time, and rank them',
      (y) =>
        withFileAndSets(y)
          .option('grid', {
            type: 'string',
            array: true,
            demandOption: true,
            describe: 'stage.key=value1,value2,... (repeatable): the runs are every combination',
          })
          .options(EXECUTOR_OPTIONS)
          .option('parallel', { type: 'number', describe: 'runs at once (default: half the CPUs, at least 1; with --executor queue, all)' })
          .option('metric', { type: 'string', describe: '[STAGE.]NAME to rank by (default: the last stage\'s test_accuracy)' })
          .option('backend', { choices: BACKEND_CHOICES, describe: "tfjs backend of every run (overrides the file's)" })
          .option('out', { type: 'string', describe: 'write the leaderboard JSON here (default: <store>/<pipeline>/sweeps/<id>.json)' }),
      wrap(async (args) => (await import('./sweep.js')).sweepCommand(args)),
    )
    .command(
      'compile <file>',
      'write the pipeline as a workflow for a cluster: one step per stage, each `pipeline run FILE --only STAGE`',
      (y) =>
        withFileAndSets(y)
          .option('target', { choices: ['argo'] as const, demandOption: true, describe: 'argo: an Argo Workflow (Kubernetes)' })
          .option('output', { alias: 'o', type: 'string', describe: 'write to this file (default: stdout)' })
          .option('image', { type: 'string', describe: 'container image of every step (default: tfjs-pipeline:<version>, see Dockerfile)' })
          .option('backend', { choices: BACKEND_CHOICES, describe: "tfjs backend of every step (overrides the file's)" })
          .option('retries', { type: 'number', default: 2, describe: 'retries of a failed step (never of exit 2, bad input)' })
          .option('secret', { type: 'string', describe: 'Kubernetes Secret whose keys become every step\'s environment (e.g. AWS credentials)' }),
      wrap(async (args) => (await import('./compile.js')).compileCommand(args)),
    )
    .command(
      'schema',
      'print the JSON Schema of pipeline files',
      (y) => y,
      wrap(async () => (await import('./commands.js')).schemaCommand()),
    )
    .demandCommand(1, 'name a command: run, worker, validate, plan, runs, show, report, diff, sweep, serve, gc, push, pull, compile or schema')
    .strict()
    .recommendCommands()
    .fail((message, err, y) => {
      if (err) throw err;
      y.showHelp();
      process.stderr.write(`\nerror: ${message}\n`);
      process.exit(EXIT_BAD_INPUT);
    })
    .help()
    .parseAsync();
}
