import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { signRequest } from '../../src/serve/auth.js';
import { startServer, type RunningServer } from '../../src/serve/server.js';
import { BIN, cli, removeTempDirs, ROOT, tempDir } from '../helpers.js';
import {
  assertSameFloats,
  digitsExamples,
  flat,
  value,
  nest,
  parsePrometheus,
  quickstartStore,
  referenceModel,
  request,
} from './helpers.js';

// The REST API against a real export (the quickstart's digits MLP, input [-1,8,8,1]), started
// in-process on port 0. The client side is plain fetch written from TensorFlow Serving's REST
// documentation; predictions are checked against the version's tfjs-graph model loaded with
// stock tfjs, value for value.

const MAX_BODY = 64 * 1024;
let base = '';
let server: RunningServer;
let url = '';
let examples: number[][][][] = [];
let x: Float32Array;
let expected: Float32Array;

test.before(async () => {
  const store = await quickstartStore();
  base = join(store, 'serving');
  server = await startServer({
    base,
    port: 0,
    backend: 'wasm',
    pollSeconds: 0,
    maxBodyBytes: MAX_BODY,
    // Requests wait up to 20 ms for company, so concurrent ones are merged however they arrive.
    batching: { maxBatchSize: 64, batchTimeoutMicros: 20_000, maxEnqueuedBatches: 16 },
    labels: { '*': { stable: 1 }, digits: { canary: 1 } },
    onEvent: () => undefined,
  });
  url = server.url;
  ({ x, examples } = await digitsExamples(5));
  const reference = await referenceModel(join(base, 'digits', '1'));
  expected = await reference.predict(x, 5);
  reference.dispose();
});

test.after(async () => {
  await server?.close();
  await removeTempDirs();
});

const predict = (path: string, body: unknown, headers?: Record<string, string>) =>
  request(`${url}${path}`, { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

test('model status and metadata are what TF Serving returns for the version', async () => {
  const ok = { model_version_status: [{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }] };
  for (const path of ['/v1/models/digits', '/v1/models/digits/versions/1', '/v1/models/digits/labels/stable']) {
    const r = await request(`${url}${path}`);
    assert.is(r.status, 200, path);
    assert.is(r.headers.get('content-type')?.split(';')[0], 'application/json');
    assert.equal(r.json, ok, path);
  }
  const meta = await request(`${url}/v1/models/digits/metadata`);
  assert.is(meta.status, 200);
  assert.equal(meta.json.model_spec, { name: 'digits', signature_name: '', version: '1' });
  const sig = meta.json.metadata.signature_def.signature_def.serving_default;
  assert.is(sig.method_name, 'tensorflow/serving/predict');
  assert.equal(sig.inputs.input, {
    dtype: 'DT_FLOAT',
    tensor_shape: { dim: ['-1', '8', '8', '1'].map((size) => ({ size, name: '' })), unknown_rank: false },
    name: 'input:0',
  });
  assert.equal(sig.outputs.probabilities.tensor_shape.dim.map((d: { size: string }) => d.size), ['-1', '10']);
  assert.equal(meta.json.metadata.model_card.labels, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.is((await request(`${url}/v1/models/digits/versions/1/metadata`)).json.model_spec.version, '1');
});

test('row and columnar :predict answer what the model computes, in every documented form', async () => {
  const rows = examples;
  const forms: [string, unknown, 'predictions' | 'outputs'][] = [
    ['/v1/models/digits:predict', { instances: rows }, 'predictions'],
    ['/v1/models/digits:predict', { signature_name: 'serving_default', instances: rows.map((e) => ({ input: e })) }, 'predictions'],
    ['/v1/models/digits/versions/1:predict', { inputs: rows }, 'outputs'],
    ['/v1/models/digits/labels/canary:predict', { inputs: { input: rows } }, 'outputs'],
  ];
  for (const [path, body, key] of forms) {
    const r = await predict(path, body);
    assert.is(r.status, 200, `${path} ${r.text}`);
    assert.equal(Object.keys(r.json), [key]);
    assert.is(r.json[key].length, 5);
    assert.is(r.json[key][0].length, 10);
    assertSameFloats(flat(r.json[key]), expected, `${path} ${key}`);
  }
  // curl -d sends application/x-www-form-urlencoded; TF Serving reads the body as JSON anyway.
  const form = await request(`${url}/v1/models/digits:predict`, {
    body: JSON.stringify({ instances: [rows[0]] }),
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  assert.is(form.status, 200, form.text);
  assertSameFloats(flat(form.json.predictions), expected.subarray(0, 10), 'form-encoded');
  // Whole numbers keep a ".0" (TF Serving's float formatting), so a client infers floats.
  const zeros = await predict('/v1/models/digits:predict', { instances: [nest(new Float32Array(64), [8, 8, 1])] });
  assert.is(zeros.status, 200);
  assert.not.match(zeros.text, /[,[]\d+[,\]]/);
});

test('each bad request gets TF Serving\'s status and a message naming what was expected and what was sent', async () => {
  const one = examples[0];
  const cases: [string, string, string | undefined, number, RegExp | string][] = [
    ['malformed JSON', '/v1/models/digits:predict', '{"instances": [1,', 400, 'JSON Parse error'],
    ['empty body', '/v1/models/digits:predict', '', 400, 'The document is empty'],
    ['not an object', '/v1/models/digits:predict', '[1, 2]', 400, 'must be a JSON object'],
    ['no inputs', '/v1/models/digits:predict', '{"signature_name": "serving_default"}', 400, "Missing 'inputs' or 'instances' key"],
    ['both forms', '/v1/models/digits:predict', JSON.stringify({ instances: [one], inputs: [one] }), 400, "both 'instances'"],
    ['instances not a list', '/v1/models/digits:predict', '{"instances": 3}', 400, "'instances' must be a list"],
    ['empty instances', '/v1/models/digits:predict', '{"instances": []}', 400, "No values in 'instances'"],
    [
      'example without its channel dimension',
      '/v1/models/digits:predict',
      JSON.stringify({ instances: [one.map((r) => r.map((c) => c[0]))] }),
      400,
      "'instances' element 0 has shape [8,8] but each example must have shape [8,8,1] (input \"input\" of model \"digits\" version 1 is float32 [-1,8,8,1]",
    ],
    [
      'a batch in instances',
      '/v1/models/digits:predict',
      JSON.stringify({ instances: [[one]] }),
      400,
      'in "instances" each entry is one example, without the batch dimension',
    ],
    ['columnar without the batch dimension', '/v1/models/digits:predict', JSON.stringify({ inputs: one }), 400, "'inputs' has shape [8,8,1] but the input must have shape [-1,8,8,1]"],
    ['ragged lists', '/v1/models/digits:predict', JSON.stringify({ instances: [[...one.slice(0, 7), one[7].slice(0, 7)]] }), 400, 'expected a list of 8 at [7]'],
    ['examples of different shapes', '/v1/models/digits:predict', JSON.stringify({ instances: [one, one.slice(0, 4)] }), 400, 'element 1 has shape [4,8,1] but element 0 has shape [8,8,1]'],
    ['a string value', '/v1/models/digits:predict', JSON.stringify({ instances: [JSON.parse(JSON.stringify(one).replace(/^\[\[\[[^\]]*\]/, '[[["7"]'))] }), 400, /the value at \[0\]\[0\]\[0\] is the string "7", not a number \(input "input" .* is float32/],
    ['a boolean value', '/v1/models/digits:predict', JSON.stringify({ inputs: [JSON.parse(JSON.stringify(one).replace(/^\[\[\[[^\]]*\]/, '[[[true]'))] }), 400, 'is boolean true, not a number'],
    ['a binary value', '/v1/models/digits:predict', JSON.stringify({ instances: [{ b64: 'AAAA' }] }), 400, 'binary {"b64": ...} value'],
    ['outside float32', '/v1/models/digits:predict', JSON.stringify({ instances: [JSON.parse(JSON.stringify(one).replace(/^\[\[\[[^\]]*\]/, '[[[1e39]'))] }), 400, 'without loss of precision'],
    ['wrong input name', '/v1/models/digits:predict', JSON.stringify({ instances: [{ image: one }] }), 400, 'has one named input: "input"'],
    ['unknown signature', '/v1/models/digits:predict', JSON.stringify({ signature_name: 'predict_images', instances: [one] }), 400, 'Serving signature name: "predict_images" not found in signature def; model "digits" version 1 has: serving_default'],
    ['signature_name not a string', '/v1/models/digits:predict', '{"signature_name": 100}', 400, "'signature_name' key must be a string value"],
    ['unknown model', '/v1/models/fashion:predict', JSON.stringify({ instances: [one] }), 404, 'Servable not found for request: Latest(fashion); no model "fashion" is served from'],
    ['unknown version', '/v1/models/digits/versions/7:predict', JSON.stringify({ instances: [one] }), 404, 'Servable not found for request: Specific(digits, 7); it has versions 1'],
    ['unknown label', '/v1/models/digits/labels/beta:predict', JSON.stringify({ instances: [one] }), 400, 'Unrecognized servable version label: beta (labels of model digits: stable, canary)'],
    ['a path that climbs out of the base', '/v1/models/..%2F..%2Fetc:predict', JSON.stringify({ instances: [one] }), 404, 'Servable not found for request: Latest(../../etc)'],
    ['status of an unknown model', '/v1/models/fashion', undefined, 404, 'Could not find any versions of model fashion'],
    ['status of an unknown version', '/v1/models/digits/versions/3', undefined, 404, 'Could not find version 3 of model digits (versions: 1)'],
    ['no model name', '/v1/models', undefined, 400, 'Missing model name in request'],
    ['GET on :predict', '/v1/models/digits:predict', undefined, 400, 'Malformed request: GET "/v1/models/digits:predict"'],
    ['a version that is not a number', '/v1/models/digits/versions/one:predict', '{}', 400, 'Malformed request: POST'],
    ['a version beyond int64', '/v1/models/digits/versions/99999999999999999999:predict', '{}', 400, 'Failed to convert version'],
    [':classify', '/v1/models/digits:classify', '{"examples": []}', 501, ':classify is not served'],
    ['no such endpoint', '/v2/models/digits', undefined, 404, 'no such endpoint: GET "/v2/models/digits"'],
  ];
  for (const [what, path, body, status, message] of cases) {
    const r = await request(`${url}${path}`, { body });
    assert.is(r.status, status, `${what}: ${r.text}`);
    assert.equal(Object.keys(r.json ?? {}), ['error'], `${what}: {"error": ...}: ${r.text}`);
    if (typeof message === 'string') assert.ok(r.json.error.includes(message), `${what}: ${r.json.error}\n  should contain: ${message}`);
    else assert.match(r.json.error, message, what);
  }

  // fetch normalises dot segments away; a raw client sends them as they are.
  for (const [path, status, message] of [
    ['/v1/models/%2E%2E/metadata', 404, 'Servable not found for request: Latest(..)'],
    ['/v1/models/../../../etc/passwd', 400, 'Malformed request: GET "/v1/models/../../../etc/passwd"'],
    ['/v1/models/%2e%2e%2f%2e%2e%2fetc', 404, 'Could not find any versions of model ../../etc'],
  ] as [string, number, string][]) {
    const r = await rawGet(url, path);
    assert.is(r.status, status, `${path}: ${r.body}`);
    assert.match(JSON.parse(r.body).error, message);
  }

  const tooLarge = await predict('/v1/models/digits:predict', JSON.stringify({ instances: Array(200).fill(one) }));
  assert.is(tooLarge.status, 413, tooLarge.text);
  assert.match(tooLarge.json.error, `larger than ${MAX_BODY} bytes (--max-body-bytes)`);
  // The server still answers after every one of them.
  assert.is((await predict('/v1/models/digits:predict', { instances: [one] })).status, 200);
});

test('concurrent requests are merged into one model run and each caller gets its own rows', async () => {
  const before = parsePrometheus((await request(`${url}/metrics`)).text).samples;
  const runsBefore = value(before, 'pipeline_serve_batch_requests_count', { model: 'digits' }, true);
  // Each request asks for a different slice of the five examples (1 to 3 rows), 30 at once.
  const calls = Array.from({ length: 30 }, (_, i) => {
    const start = i % 5;
    const rows = Math.min(1 + (i % 3), 5 - start);
    return { start, rows };
  });
  const answers = await Promise.all(calls.map((c) => predict('/v1/models/digits:predict', { instances: examples.slice(c.start, c.start + c.rows) })));
  answers.forEach((r, i) => {
    assert.is(r.status, 200, r.text);
    const { start, rows } = calls[i];
    // Merged runs compute the same rows in a larger matrix product: equal to float32 rounding.
    assertSameFloats(flat(r.json.predictions), expected.subarray(start * 10, (start + rows) * 10), `request ${i}`, 1e-6);
  });
  const after = parsePrometheus((await request(`${url}/metrics`)).text).samples;
  const runs = value(after, 'pipeline_serve_batch_requests_count', { model: 'digits' }) - runsBefore;
  const alone =
    value(after, 'pipeline_serve_batch_requests_bucket', { model: 'digits', le: '1' }) -
    value(before, 'pipeline_serve_batch_requests_bucket', { model: 'digits', le: '1' }, true);
  assert.ok(runs < 30, `30 requests ran in ${runs} model runs`);
  assert.ok(runs - alone >= 1, 'at least one run merged several requests');
  const rowsServed = calls.reduce((n, c) => n + c.rows, 0);
  const sumBefore = value(before, 'pipeline_serve_batch_size_sum', { model: 'digits' }, true);
  assert.is(value(after, 'pipeline_serve_batch_size_sum', { model: 'digits' }) - sumBefore, rowsServed, 'every row ran once');
});

test('/metrics is valid Prometheus text with requests, errors, latency, batch sizes and loaded versions', async () => {
  const page = await request(`${url}/metrics`);
  assert.is(page.status, 200);
  assert.is(page.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const { types, samples } = parsePrometheus(page.text);
  assert.is(types.get('pipeline_serve_requests_total'), 'counter');
  assert.is(types.get('pipeline_serve_request_duration_seconds'), 'histogram');
  assert.is(types.get('pipeline_serve_batch_size'), 'histogram');
  assert.ok(value(samples, 'pipeline_serve_requests_total', { api: 'predict', model: 'digits', code: '200' }) >= 30);
  assert.ok(value(samples, 'pipeline_serve_request_errors_total', { api: 'predict', model: '', code: '404' }) >= 1);
  assert.ok(value(samples, 'pipeline_serve_request_errors_total', { api: 'predict', model: 'digits', code: '400' }) >= 10);
  assert.ok(value(samples, 'pipeline_serve_request_duration_seconds_count', { api: 'predict', model: 'digits' }) >= 30);
  assert.is(value(samples, 'pipeline_serve_loaded_versions', { model: 'digits' }), 1);
  assert.is(value(samples, 'pipeline_serve_model_version_state', { model: 'digits', version: '1', state: 'AVAILABLE' }), 1);
  assert.is(value(samples, 'pipeline_serve_version_loads_total', { model: 'digits', result: 'ok' }), 1);
  // Request text never becomes a label value: unknown models are counted under model="".
  assert.not.ok(samples.some((s) => s.labels.model === 'fashion' || s.labels.model?.includes('..')));
  const health = await request(`${url}/healthz`);
  assert.equal(health.json, { status: 'ok', models: { digits: [{ version: 1, state: 'AVAILABLE' }] } });
});

test('API keys and HMAC signatures: missing, wrong, stale and replayed credentials get 401', async () => {
  const apiKey = 'k'.repeat(20) + '-api';
  const hmacKey = 'h'.repeat(20) + '-hmac';
  const secured = await startServer({ base, port: 0, pollSeconds: 0, batching: false, auth: { apiKeys: [apiKey], hmacKeys: [hmacKey] } });
  try {
    const path = '/v1/models/digits:predict';
    const body = JSON.stringify({ instances: [examples[0]] });
    const post = (headers: Record<string, string>, p = path, b = body) =>
      request(`${secured.url}${p}`, { body: b, headers: { 'content-type': 'application/json', ...headers } });

    const none = await post({});
    assert.is(none.status, 401);
    assert.is(none.headers.get('www-authenticate'), 'Bearer');
    assert.match(none.json.error, 'requires an API key ("Authorization: Bearer <key>" or "x-api-key: <key>") or an HMAC signature');
    assert.is((await post({ authorization: 'Bearer wrong-key-of-some-length' })).json.error.split(' (')[0], 'invalid API key');
    assert.is((await post({ authorization: `Bearer ${apiKey}` })).status, 200);
    assert.is((await post({ 'x-api-key': apiKey })).status, 200);
    assert.is((await request(`${secured.url}/v1/models/digits`)).status, 401, 'status needs credentials too');
    assert.is((await request(`${secured.url}/metrics`)).status, 401, '/metrics needs credentials unless --public-metrics');
    assert.is((await request(`${secured.url}/metrics`, { headers: { 'x-api-key': apiKey } })).status, 200);
    assert.is((await request(`${secured.url}/healthz`)).status, 200, '/healthz is open for probes');

    const signed = signRequest(hmacKey, { method: 'POST', path, body });
    const first = await post(signed);
    assert.is(first.status, 200, first.text);
    assertSameFloats(flat(first.json.predictions), expected.subarray(0, 10), 'signed request');
    const replay = await post(signed);
    assert.is(replay.status, 401);
    assert.match(replay.json.error, `replayed request: nonce "${signed['x-nonce']}" was already used`);
    const stale = await post(signRequest(hmacKey, { method: 'POST', path, body }, Date.now() - 600_000));
    assert.is(stale.status, 401);
    assert.match(stale.json.error, /stale request: x-timestamp \d+ is 60\d s from the server's clock .* at most 300 s/);
    const future = await post(signRequest(hmacKey, { method: 'POST', path, body }, Date.now() + 600_000));
    assert.is(future.status, 401);
    const otherBody = await post(signRequest(hmacKey, { method: 'POST', path, body: '{}' }));
    assert.is(otherBody.status, 401);
    assert.match(otherBody.json.error, 'bad HMAC signature');
    const otherKey = await post(signRequest('x'.repeat(24), { method: 'POST', path, body }));
    assert.match(otherKey.json.error, 'bad HMAC signature');
    const otherPath = await post(signRequest(hmacKey, { method: 'POST', path, body }), `${path}?v=2`);
    assert.match(otherPath.json.error, 'bad HMAC signature', 'the query string is signed');
    const { 'x-nonce': _, ...noNonce } = signRequest(hmacKey, { method: 'POST', path, body });
    assert.match((await post(noNonce)).json.error, 'without a valid x-nonce');
    const get = signRequest(hmacKey, { method: 'GET', path: '/v1/models/digits' });
    assert.is((await request(`${secured.url}/v1/models/digits`, { headers: get })).status, 200, 'a signed GET');
  } finally {
    await secured.close();
  }
});

test('a request that cannot finish in --request-timeout-ms gets 504; a full batch queue gets 503', async () => {
  // Batches wait 300 ms for company: longer than the 50 ms a request may take.
  const slow = await startServer({
    base,
    port: 0,
    pollSeconds: 0,
    requestTimeoutMs: 50,
    batching: { maxBatchSize: 2, batchTimeoutMicros: 300_000, maxEnqueuedBatches: 1 },
  });
  try {
    const post = (rows: number) => request(`${slow.url}/v1/models/digits:predict`, { body: JSON.stringify({ instances: examples.slice(0, rows) }) });
    const [late, full] = await Promise.all([post(1), new Promise((r) => setTimeout(r, 10)).then(() => post(2))]);
    assert.is(late.status, 504, late.text);
    assert.is(late.json.error, 'digits:predict did not finish within 50 ms (--request-timeout-ms)');
    assert.is(full.status, 503, full.text);
    assert.match(full.json.error, 'the batch queue of model "digits" version 1 is full (rows waiting: 1, limit: 2 = --max-batch-size x --max-enqueued-batches)');
  } finally {
    await slow.close();
  }
});

test('`pipeline serve` starts from the command line, answers, and stops cleanly on SIGTERM', async () => {
  const child = spawn(process.execPath, [BIN, 'serve', base, '--port', '0', '--backend', 'cpu', '--poll-seconds', '0', '--no-batching'], { cwd: ROOT });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const served = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "serving" line in 20 s:\n${out}\n${err}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /serving 1 model \(digits\) from .* on (http:\/\/127\.0\.0\.1:\d+): version policy latest, no batching/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  assert.match(out, 'backend: cpu (as requested)');
  assert.match(out, /digits version 1: AVAILABLE \(verified and loaded in \d+ ms\)/);
  const r = await request(`${served}/v1/models/digits:predict`, { body: JSON.stringify({ instances: [examples[0]] }) });
  assert.is(r.status, 200, r.text);
  const code = await new Promise<number | null>((resolve) => {
    child.on('close', resolve);
    child.kill('SIGTERM');
  });
  assert.is(code, 0, out + err);
  assert.match(out, 'SIGTERM: stopping');

  const keyFile = join(await tempDir(), 'keys');
  await writeFile(keyFile, '# no keys here\n', { mode: 0o600 });
  for (const [args, message] of [
    [['--version-policy', 'specific'], '--version-policy specific needs --versions'],
    [['--versions', '1,3'], '--versions applies to --version-policy specific'],
    [['--version-label', 'stable'], '--version-label "stable": expected LABEL=VERSION or MODEL:LABEL=VERSION'],
    [['--api-key-file', keyFile], 'the file holds no key'],
  ] as [string[], string][]) {
    const bad = await cli(['serve', base, '--port', '0', ...args]);
    assert.is(bad.code, 2, `${args.join(' ')}: ${bad.stderr}`);
    assert.match(bad.stderr, message);
  }
  const missing = await cli(['serve', join(base, 'nope'), '--port', '0']);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'is not a folder; give the folder that holds <model>/<version>/');
});

function rawGet(base: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}/`, { path }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test.run();
