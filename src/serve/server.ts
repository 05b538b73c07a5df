import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import * as tf from '@tensorflow/tfjs';
import Fastify from 'fastify';
import { selectBackend, type BackendChoice, type BackendSelection } from '../backend/select.js';
import { InputError } from '../errors.js';
import { registerApi } from './api.js';
import { Authenticator, type AuthOptions } from './auth.js';
import { DEFAULT_BATCHING, type BatchOptions } from './batcher.js';
import { ServeMetrics } from './metrics.js';
import { ModelRegistry, type RegistryEvent, type VersionPolicy } from './model-registry.js';
import { loadServable } from './servable.js';

// `pipeline serve` as a library: startServer() loads what the version policy wants from the
// base folder, then listens; close() stops accepting, lets in-flight requests finish, and
// unloads every model. Tests start it in-process on port 0.

export interface ServeOptions {
  /** Folder of <model>/<version>/ (or one model's <version>/ folders). */
  base: string;
  host?: string;
  /** 0: any free port (see the returned url). */
  port?: number;
  modelNames?: string[];
  policy?: VersionPolicy;
  /** Seconds between scans of the base folder; 0 disables polling. */
  pollSeconds?: number;
  labels?: Record<string, Record<string, number>>;
  /** false: every request runs on its own. */
  batching?: BatchOptions | false;
  /** tfjs backend to select first; undefined leaves tfjs's current backend alone (tests). */
  backend?: BackendChoice;
  auth?: AuthOptions;
  publicMetrics?: boolean;
  maxBodyBytes?: number;
  requestTimeoutMs?: number;
  onEvent?: (event: RegistryEvent) => void;
  log?: (line: string) => void;
}

export const SERVE_DEFAULTS = {
  host: '127.0.0.1',
  port: 8501,
  pollSeconds: 1,
  maxBodyBytes: 8 * 1024 * 1024,
  requestTimeoutMs: 30_000,
} as const;

export interface RunningServer {
  url: string;
  port: number;
  registry: ModelRegistry;
  metrics: ServeMetrics;
  backend?: BackendSelection;
  close(): Promise<void>;
}

export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const base = resolve(o.base);
  if (!(await stat(base).then((s) => s.isDirectory(), () => false))) {
    throw new InputError(
      `serve: ${o.base} is not a folder; give the folder that holds <model>/<version>/ (an export stage's base, by default <store>/serving)`,
    );
  }
  const backend = o.backend ? await selectBackend(o.backend) : undefined;
  const batching = o.batching === undefined ? DEFAULT_BATCHING : o.batching;
  if (
    batching &&
    !(Number.isInteger(batching.maxBatchSize) && batching.maxBatchSize >= 1 && Number.isInteger(batching.maxEnqueuedBatches) && batching.maxEnqueuedBatches >= 1 && batching.batchTimeoutMicros >= 0)
  ) {
    throw new InputError('serve: --max-batch-size and --max-enqueued-batches must be whole numbers of at least 1, and --batch-timeout-micros at least 0');
  }
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let registry: ModelRegistry | undefined;
  let inflight = 0;
  const metrics = new ServeMetrics({
    versionStates: () => registry?.versionStates() ?? [],
    tensors: () => tf.memory().numTensors,
    inflight: () => inflight,
  });
  registry = new ModelRegistry({
    base,
    modelNames: o.modelNames,
    policy: o.policy ?? { kind: 'latest', numVersions: 1 },
    pollSeconds: o.pollSeconds ?? SERVE_DEFAULTS.pollSeconds,
    labels: o.labels,
    load: (model, version, dir) =>
      loadServable(model, version, dir, {
        batching: batching || undefined,
        onExecute: (rows, requests, seconds) => {
          const labels = { model, version: String(version) };
          metrics.batchSize.observe(labels, rows);
          metrics.batchRequests.observe(labels, requests);
          metrics.inferenceSeconds.observe(labels, seconds);
        },
      }),
    onEvent: (event) => {
      if (event.kind === 'loaded' || event.kind === 'load-failed') {
        metrics.loads.inc({ model: event.model ?? '', result: event.kind === 'loaded' ? 'ok' : 'error' });
      }
      o.onEvent?.(event);
    },
  });

  const maxBodyBytes = o.maxBodyBytes ?? SERVE_DEFAULTS.maxBodyBytes;
  const requestTimeoutMs = o.requestTimeoutMs ?? SERVE_DEFAULTS.requestTimeoutMs;
  const app = Fastify({
    logger: false,
    bodyLimit: maxBodyBytes,
    // Node's limit on receiving a whole request: a client trickling bytes cannot hold a socket forever.
    requestTimeout: requestTimeoutMs,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  app.addHook('onRequest', async (_req, reply) => {
    inflight++;
    reply.raw.once('close', () => inflight--);
  });
  registerApi(app, {
    registry,
    auth: new Authenticator(o.auth ?? {}),
    metrics,
    maxBodyBytes,
    requestTimeoutMs,
    publicMetrics: o.publicMetrics ?? false,
    log,
  });

  await registry.start();
  try {
    await app.listen({ host: o.host ?? SERVE_DEFAULTS.host, port: o.port ?? SERVE_DEFAULTS.port });
  } catch (err) {
    await registry.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
      throw new InputError(`serve: cannot listen on ${o.host ?? SERVE_DEFAULTS.host}:${o.port ?? SERVE_DEFAULTS.port} (${code}); choose another --port or --host`);
    }
    throw err;
  }
  const address = app.server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    registry,
    metrics,
    backend,
    close: () =>
      (closing ??= (async () => {
        await app.close();
        await registry.close();
      })()),
  };
}
