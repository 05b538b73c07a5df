import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Authenticator } from './auth.js';
import { PROMETHEUS_CONTENT_TYPE, type ServeMetrics } from './metrics.js';
import type { ModelRegistry, VersionRequest } from './model-registry.js';
import { quote, ServeError } from './status.js';
import { formatPredictResponse, parsePredictInputs, parseRequestJson, requestedSignature, type TensorInfo } from './tensor-json.js';

// TensorFlow Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) as fastify
// routes, with its paths, JSON shapes, error messages and HTTP statuses:
//
//   GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
//   GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature_def
//   POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar
//   GET  /healthz (readiness), GET /metrics (Prometheus)
//
// The /v1 paths are matched by TF Serving's own regular expressions (case-insensitive; the model
// name is any run of characters but / and :, percent-decoded) rather than router parameters,
// because ":predict" shares its segment with the name. Errors are {"error": "..."}.

export interface ApiOptions {
  registry: ModelRegistry;
  auth: Authenticator;
  metrics: ServeMetrics;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  /** Serve /metrics without credentials (for a Prometheus that cannot sign). */
  publicMetrics: boolean;
  /** Where unexpected (500) errors are reported. */
  log: (line: string) => void;
}

interface RequestInfo {
  started: number;
  api: string;
  model: string;
  needsSignature: boolean;
}

const PREDICT_PATH = /^\/v1\/models\/([^/:]+)(?:\/versions\/(\d+)|\/labels\/([^/:]+))?:(classify|regress|predict)$/i;
const STATUS_PATH = /^\/v1\/models(?:\/([^/:]+))?(?:\/versions\/(\d+)|\/labels\/([^/:]+))?(?:\/(metadata))?$/i;
const USAGE =
  'use GET /v1/models/<name>[/versions/<N>|/labels/<label>][/metadata] or POST /v1/models/<name>[/versions/<N>|/labels/<label>]:predict';

const infos = new WeakMap<FastifyRequest, RequestInfo>();
const infoOf = (req: FastifyRequest): RequestInfo => infos.get(req)!;

/** The API a path is for, as the metrics' "api" label (set before authentication, so refusals are counted where they belong). */
function apiOf(path: string): string {
  if (path === '/healthz') return 'health';
  if (path === '/metrics') return 'metrics';
  const verb = /:(predict|classify|regress)$/i.exec(path);
  if (verb) return verb[1].toLowerCase();
  if (/^\/v1\/models\/[^/]+.*\/metadata$/i.test(path)) return 'metadata';
  if (/^\/v1\/models\//i.test(path)) return 'status';
  return 'other';
}

function sendJson(reply: FastifyReply, status: number, body: string | object): FastifyReply {
  return reply
    .code(status)
    .type('application/json')
    .send(typeof body === 'string' ? body : JSON.stringify(body));
}

function decodePart(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new ServeError('INVALID_ARGUMENT', `Failed to decode ${what}: ${quote(text, 60)}`);
  }
}

function versionOf(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (!Number.isSafeInteger(v)) throw new ServeError('INVALID_ARGUMENT', `Failed to convert version: ${quote(text, 30)} to numeric.`);
  return v;
}

function tensorInfoJson(t: TensorInfo) {
  return {
    dtype: 'DT_FLOAT',
    tensor_shape: { dim: t.shape.map((d) => ({ size: String(d), name: '' })), unknown_rank: false },
    name: t.tensorName,
  };
}

export function registerApi(app: FastifyInstance, o: ApiOptions): void {
  const { registry, auth, metrics } = o;

  // TF Serving reads the body as JSON whatever its Content-Type (curl -d sends form encoding);
  // the raw bytes are also what an HMAC signature covers.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.addHook('onRequest', async (req) => {
    const info: RequestInfo = { started: performance.now(), api: apiOf(req.url.split('?')[0]), model: '', needsSignature: false };
    infos.set(req, info);
    if (info.api === 'health' || (info.api === 'metrics' && o.publicMetrics)) return;
    info.needsSignature = auth.checkHeaders(req.headers) === 'hmac';
  });

  app.addHook('preHandler', async (req) => {
    const info = infoOf(req);
    if (info.needsSignature) auth.verifySignature(req.method, req.url, req.headers, (req.body as Buffer | undefined) ?? Buffer.alloc(0));
  });

  app.addHook('onResponse', async (req, reply) => {
    const info = infos.get(req);
    if (!info) return;
    const labels = { api: info.api, model: info.model, code: String(reply.statusCode) };
    metrics.requests.inc(labels);
    if (reply.statusCode >= 400) metrics.errors.inc(labels);
    metrics.latency.observe({ api: info.api, model: info.model }, (performance.now() - info.started) / 1000);
  });

  app.setErrorHandler((err: FastifyError | ServeError, req, reply) => {
    let status: number;
    let message: string;
    if (err instanceof ServeError) {
      status = err.httpStatus;
      message = err.message;
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      status = 413;
      message = `the request body is larger than ${o.maxBodyBytes} bytes (--max-body-bytes); send fewer examples per request`;
    } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      status = err.statusCode;
      message = err.message;
    } else {
      status = 500;
      message = `internal error while answering ${req.method} ${req.url.split('?')[0]}: ${err.message}`;
      o.log(`error: ${message}\n${err.stack ?? ''}`);
    }
    if (status === 401 && auth.usesApiKeys) reply.header('www-authenticate', 'Bearer');
    return sendJson(reply, status, { error: message });
  });

  app.setNotFoundHandler((req, reply) =>
    sendJson(reply, 404, {
      error: `no such endpoint: ${req.method} ${quote(req.url.split('?')[0], 100)}; the API is /v1/models/<name>... (${USAGE}), /healthz and /metrics`,
    }),
  );

  app.get('/healthz', async (_req, reply) => {
    const models = Object.fromEntries(
      registry.modelNames().map((m) => [m, registry.status(m).map((v) => ({ version: v.version, state: v.state }))]),
    );
    const ready = registry.ready();
    return sendJson(reply, ready ? 200 : 503, { status: ready ? 'ok' : 'no model version is AVAILABLE yet', models });
  });

  app.get('/metrics', async (_req, reply) => reply.code(200).type(PROMETHEUS_CONTENT_TYPE).send(metrics.registry.render()));

  app.all('/v1/*', async (req, reply) => {
    const info = infoOf(req);
    const path = req.url.split('?')[0];
    const malformed = () => new ServeError('INVALID_ARGUMENT', `Malformed request: ${req.method} ${quote(path, 100)}; ${USAGE}`);
    const match = req.method === 'POST' ? PREDICT_PATH.exec(path) : req.method === 'GET' ? STATUS_PATH.exec(path) : null;
    if (!match) throw malformed();
    const [, rawName, rawVersion, rawLabel, tail] = match;
    if (rawName === undefined) throw new ServeError('INVALID_ARGUMENT', `Missing model name in request; ${USAGE}`);
    const name = decodePart(rawName, 'model name');
    const request: VersionRequest = { version: versionOf(rawVersion), label: rawLabel === undefined ? undefined : decodePart(rawLabel, 'model version label') };
    const known = registry.modelNames().includes(name);

    if (req.method === 'GET' && tail === undefined) {
      if (known) info.model = name;
      const versions = registry.status(name, request);
      return sendJson(reply, 200, {
        model_version_status: versions.map((v) => ({
          version: String(v.version),
          state: v.state,
          status: { error_code: v.code, error_message: v.message },
        })),
      });
    }

    if (req.method === 'GET') {
      const lease = registry.acquire(name, request);
      info.model = name;
      try {
        const s = lease.servable;
        const card = s.card.labels || s.card.preprocessing ? { model_card: { labels: s.card.labels, preprocessing: s.card.preprocessing } } : {};
        return sendJson(reply, 200, {
          model_spec: { name, signature_name: '', version: String(s.version) },
          metadata: {
            signature_def: {
              signature_def: {
                [s.signature.name]: {
                  inputs: Object.fromEntries(s.signature.inputs.map((t) => [t.key, tensorInfoJson(t)])),
                  outputs: Object.fromEntries(s.signature.outputs.map((t) => [t.key, tensorInfoJson(t)])),
                  method_name: s.signature.methodName,
                  defaults: {},
                },
              },
            },
            // Not in TF Serving: what a client needs to prepare inputs and read outputs.
            ...card,
          },
        });
      } finally {
        lease.release();
      }
    }

    if (tail.toLowerCase() !== 'predict') {
      throw new ServeError(
        'UNIMPLEMENTED',
        `:${tail} is not served: exported models have one predict signature (serving_default); POST /v1/models/${name.slice(0, 60)}:predict`,
      );
    }
    const doc = parseRequestJson(req.body as Buffer | undefined);
    const signatureName = requestedSignature(doc);
    const lease = registry.acquire(name, request);
    info.model = name;
    const deadline = info.started + o.requestTimeoutMs;
    const work = (async () => {
      try {
        const s = lease.servable;
        if (signatureName && signatureName !== s.signature.name) {
          throw new ServeError(
            'INVALID_ARGUMENT',
            `Serving signature name: "${signatureName.slice(0, 100)}" not found in signature def; ${s.where} has: ${s.signature.name}`,
          );
        }
        const input = parsePredictInputs(doc, s.signature, s.where);
        return formatPredictResponse(input.format, await s.predict(input, deadline));
      } finally {
        lease.release();
      }
    })();
    return sendJson(reply, 200, await withDeadline(work, deadline, o.requestTimeoutMs, `${name}:predict`));
  });
}

/** The work's result, or DEADLINE_EXCEEDED at the deadline (the work still finishes, unobserved). */
async function withDeadline<T>(work: Promise<T>, deadline: number, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ServeError('DEADLINE_EXCEEDED', `${what} did not finish within ${timeoutMs} ms (--request-timeout-ms)`)),
      Math.max(0, deadline - performance.now()),
    );
  });
  work.catch(() => undefined);
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
