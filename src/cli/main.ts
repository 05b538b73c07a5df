import yargs, { type Argv } from 'yargs';
import { EXIT_BAD_INPUT, EXIT_STAGE_FAILED, PipelineError } from '../errors.js';
import { BACKEND_CHOICES } from '../backend/select.js';

// yargs commands only: parse, call the library, print. Each command lazy-imports its
// implementation so `pipeline --help` starts fast, and one wrapper maps errors to exit codes
// (stack traces only with --verbose).

interface Common {
  verbose: boolean;
  store: string;
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

export async function main(argv: string[]): Promise<void> {
  await yargs(argv)
    .scriptName('pipeline')
    .usage('$0 <command> [options]')
    .option('verbose', { type: 'boolean', default: false, describe: 'show stack traces' })
    .option('store', { type: 'string', default: 'artifacts', describe: 'artifact store folder' })
    .command(
      'run <file>',
      'run a pipeline: stages whose inputs have not changed are reused',
      (y) =>
        withFileAndSets(y)
          .option('backend', { choices: BACKEND_CHOICES, describe: "tfjs backend (overrides the file's)" })
          .option('force', { type: 'boolean', default: false, describe: 'rerun every stage, even when cached' })
          .option('quiet', { type: 'boolean', default: false, describe: 'print only errors' }),
      wrap(async (args) => (await import('./commands.js')).runCommand(args)),
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
      (y) => withFileAndSets(y).option('force', { type: 'boolean', default: false }),
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
      'schema',
      'print the JSON Schema of pipeline files',
      (y) => y,
      wrap(async () => (await import('./commands.js')).schemaCommand()),
    )
    .demandCommand(1, 'name a command: run, validate, plan, runs, show or schema')
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
