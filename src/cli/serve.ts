import { stat } from 'node:fs/promises';
import { selectBackend, type BackendChoice } from '../backend/select.js';
import { EXIT_OK, InputError } from '../errors.js';
import { readKeyFile } from '../serve/auth.js';
import { describePolicy, type VersionPolicy } from '../serve/model-registry.js';
import { startServer } from '../serve/server.js';

// `pipeline serve <base>`: the flags become ServeOptions, the server's events are printed, and
// SIGINT/SIGTERM close it gracefully (in-flight requests finish; a second signal exits at once).

export interface ServeArgs {
  base: string;
  port: number;
  host: string;
  modelName?: string[];
  versionPolicy: 'latest' | 'all' | 'specific';
  versions?: string;
  numVersions: number;
  versionLabel: string[];
  pollSeconds: number;
  batching: boolean;
  maxBatchSize: number;
  batchTimeoutMicros: number;
  maxEnqueuedBatches: number;
  backend: BackendChoice;
  apiKeyFile?: string;
  hmacKeyFile?: string;
  hmacMaxSkewSeconds: number;
  publicMetrics: boolean;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  quiet: boolean;
}

const print = (text: string) => process.stdout.write(`${text}\n`);

function versionList(text: string, option: string): number[] {
  const parts = text.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = parts.find((p) => !/^(0|[1-9][0-9]{0,15})$/.test(p));
  if (bad !== undefined || parts.length === 0) {
    throw new InputError(`${option} "${text}": expected version numbers separated by commas, e.g. --versions 1,3`);
  }
  return parts.map(Number);
}

function policyOf(args: ServeArgs): VersionPolicy {
  if (args.versionPolicy === 'specific') {
    if (!args.versions) throw new InputError('--version-policy specific needs --versions, e.g. --versions 1,3');
    return { kind: 'specific', versions: versionList(args.versions, '--versions') };
  }
  if (args.versions) throw new InputError(`--versions applies to --version-policy specific (the policy is ${args.versionPolicy})`);
  if (args.versionPolicy === 'all') return { kind: 'all' };
  if (!(Number.isInteger(args.numVersions) && args.numVersions >= 1)) {
    throw new InputError(`--num-versions ${args.numVersions}: expected an integer of at least 1`);
  }
  return { kind: 'latest', numVersions: args.numVersions };
}

/** --version-label [MODEL:]LABEL=VERSION, repeatable; without MODEL the label applies to every model. */
function labelsOf(specs: string[]): Record<string, Record<string, number>> {
  const labels: Record<string, Record<string, number>> = {};
  for (const spec of specs) {
    const m = /^(?:([A-Za-z0-9][A-Za-z0-9_.-]*):)?([A-Za-z0-9_.-]+)=(0|[1-9][0-9]{0,15})$/.exec(spec);
    if (!m) throw new InputError(`--version-label "${spec}": expected LABEL=VERSION or MODEL:LABEL=VERSION, e.g. stable=1 or fashion:canary=2`);
    (labels[m[1] ?? '*'] ??= {})[m[2]] = Number(m[3]);
  }
  return labels;
}

async function warnIfReadable(path: string): Promise<void> {
  const mode = await stat(path).then((s) => s.mode, () => 0);
  if (mode & 0o077) process.stderr.write(`warning: ${path} is readable by other users (chmod 600 ${path})\n`);
}

export async function serveCommand(args: ServeArgs): Promise<number> {
  const policy = policyOf(args);
  const labels = labelsOf(args.versionLabel);
  if (!(Number.isInteger(args.port) && args.port >= 0 && args.port <= 65535)) throw new InputError(`--port ${args.port}: expected 0 to 65535`);
  if (!(args.pollSeconds >= 0)) throw new InputError(`--poll-seconds ${args.pollSeconds}: expected a number of seconds >= 0 (0: no polling)`);
  if (!(args.maxBodyBytes >= 1)) throw new InputError(`--max-body-bytes ${args.maxBodyBytes}: expected a positive number of bytes`);
  if (!(args.requestTimeoutMs >= 1)) throw new InputError(`--request-timeout-ms ${args.requestTimeoutMs}: expected a positive number of milliseconds`);
  const apiKeys = args.apiKeyFile ? await readKeyFile(args.apiKeyFile, '--api-key-file') : undefined;
  const hmacKeys = args.hmacKeyFile ? await readKeyFile(args.hmacKeyFile, '--hmac-key-file') : undefined;
  for (const f of [args.apiKeyFile, args.hmacKeyFile]) if (f) await warnIfReadable(f);
  const modelNames = args.modelName?.flatMap((n) => n.split(',')).map((n) => n.trim()).filter(Boolean);

  // Chosen (and printed) before anything loads, so the load lines follow it.
  const backend = await selectBackend(args.backend);
  print(`backend: ${backend.reason}`);
  const server = await startServer({
    base: args.base,
    host: args.host,
    port: args.port,
    modelNames: modelNames?.length ? modelNames : undefined,
    policy,
    pollSeconds: args.pollSeconds,
    labels,
    batching: args.batching
      ? { maxBatchSize: args.maxBatchSize, batchTimeoutMicros: args.batchTimeoutMicros, maxEnqueuedBatches: args.maxEnqueuedBatches }
      : false,
    auth: { apiKeys, hmacKeys, hmacMaxSkewSeconds: args.hmacMaxSkewSeconds },
    publicMetrics: args.publicMetrics,
    maxBodyBytes: args.maxBodyBytes,
    requestTimeoutMs: args.requestTimeoutMs,
    onEvent: (e) => {
      if (e.kind === 'load-failed' || e.kind === 'scan-error') process.stderr.write(`warning: ${e.message}\n`);
      else if (!args.quiet && e.kind !== 'loading') print(e.message);
    },
    log: (line) => process.stderr.write(`${line}\n`),
  });

  const models = server.registry.modelNames();
  print(
    `serving ${models.length} model${models.length === 1 ? '' : 's'}${models.length ? ` (${models.join(', ')})` : ''} from ${server.registry.base} ` +
      `on ${server.url}: version policy ${describePolicy(policy)}, ` +
      (args.batching ? `batching up to ${args.maxBatchSize} rows (timeout ${args.batchTimeoutMicros} us)` : 'no batching') +
      `, ${args.pollSeconds > 0 ? `polling every ${args.pollSeconds} s` : 'no polling'}` +
      `${apiKeys || hmacKeys ? `, ${[apiKeys ? 'API keys' : '', hmacKeys ? 'HMAC signatures' : ''].filter(Boolean).join(' or ')} required` : ''}`,
  );
  if (models.length && !args.quiet) print(`  curl ${server.url}/v1/models/${models[0]}`);
  if (!['127.0.0.1', 'localhost', '::1'].includes(args.host) && !apiKeys && !hmacKeys) {
    process.stderr.write(`warning: listening on ${args.host} without --api-key-file or --hmac-key-file: anyone who can reach the port can use the models\n`);
  }
  if (!models.length) process.stderr.write(`warning: no model versions found under ${server.registry.base} yet; waiting for <model>/<version>/ folders\n`);
  const missing = (modelNames ?? []).filter((n) => !models.includes(n));
  if (models.length && missing.length) {
    process.stderr.write(`warning: --model-name ${missing.join(', ')}: no such model under ${server.registry.base} yet (found: ${models.join(', ')})\n`);
  }

  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) process.exit(130);
      stopping = true;
      print(`${signal}: stopping; in-flight requests finish first (again to exit at once)`);
      resolveStop();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await server.close();
  return EXIT_OK;
}
