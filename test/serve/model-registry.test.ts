import { cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startServer, type RunningServer } from '../../src/serve/server.js';
import { removeTempDirs, tempDir } from '../helpers.js';
import { digitsExamples, flat, quickstartStore, referenceModel, request } from './helpers.js';

// Versions coming and going under a running server, with real exports: the quickstart's digits
// MLP (v1) and the same pipeline trained for 3 epochs (v2, different weights, so every answer
// says which version computed it). A version is published the way `pipeline run` does it, by
// renaming a complete folder into place; half-written ones are made by hand.

let base = '';
/** A complete copy of the 3-epoch export, outside the served folder until a test publishes it. */
let staged = '';
/** Version 1 as exported, to put back after a test removed it. */
let pristine = '';
let body = '';
const outputs: Record<string, Float32Array> = {};
const servers: RunningServer[] = [];

test.before(async () => {
  const [first, second] = await Promise.all([quickstartStore(), quickstartStore(['--set', 'digits-mlp.epochs=3'])]);
  base = join(first, 'serving');
  staged = join(second, 'serving', 'digits', '1');
  pristine = join(await tempDir(), 'v1');
  await cp(join(base, 'digits', '1'), pristine, { recursive: true });
  const { x, examples } = await digitsExamples(3);
  body = JSON.stringify({ instances: examples });
  await tf.setBackend('cpu');
  for (const [name, dir] of [['v1', join(base, 'digits', '1')], ['v2', staged]]) {
    const model = await referenceModel(dir);
    outputs[name] = await model.predict(x, 3);
    model.dispose();
  }
});

test.after(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await removeTempDirs();
});

async function serve(options: Partial<Parameters<typeof startServer>[0]> = {}): Promise<RunningServer> {
  const server = await startServer({ base, port: 0, pollSeconds: 0.05, onEvent: () => undefined, ...options });
  servers.push(server);
  return server;
}


/** Which version computed an answer (the two exports differ in every output). */
function versionOf(predictions: unknown): string {
  const got = flat(predictions);
  for (const [name, want] of Object.entries(outputs)) {
    if (got.every((v, i) => Math.abs(v - want[i]) <= 1e-6)) return name;
  }
  return 'neither';
}

/** Copies a version the way `pipeline run` publishes one: a hidden temporary folder renamed into place. */
async function publish(modelDir: string, version: number, from = staged): Promise<void> {
  const tmp = join(modelDir, `.tmp-test-${version}`);
  await cp(from, tmp, { recursive: true });
  await rename(tmp, join(modelDir, String(version)));
}

async function until(what: string, check: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.unreachable(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const statusOf = async (url: string, model = 'digits') => (await request(`${url}/v1/models/${model}`)).json;

test('under load, a new version is picked up and the old one removed without a failed request', async () => {
  const server = await serve({ batching: { maxBatchSize: 32, batchTimeoutMicros: 0, maxEnqueuedBatches: 64 } });
  const tensorsWithV1 = tf.memory().numTensors;
  const answers: { status: number; version: string; at: number }[] = [];
  let stop = false;
  const client = async () => {
    while (!stop) {
      const r = await request(`${server.url}/v1/models/digits:predict`, { body });
      answers.push({ status: r.status, version: r.status === 200 ? versionOf(r.json.predictions) : r.text, at: Date.now() });
    }
  };
  const clients = Array.from({ length: 8 }, client);
  await until('answers from version 1', async () => answers.length >= 20);

  await publish(join(base, 'digits'), 2);
  await until('version 2 answering', async () => answers.at(-1)?.version === 'v2');
  const switched = Date.now();
  await rm(join(base, 'digits', '1'), { recursive: true });
  await until('version 1 forgotten', async () => (await statusOf(server.url)).model_version_status.length === 1);
  await until('more answers', async () => answers.filter((a) => a.at > switched).length >= 50);
  stop = true;
  await Promise.all(clients);

  const failed = answers.filter((a) => a.status !== 200 || a.version === 'neither');
  assert.equal(failed, [], 'every request succeeded with one of the two models');
  const firstV2 = answers.findIndex((a) => a.version === 'v2');
  assert.ok(firstV2 > 0, 'version 1 answered first');
  // Requests already running on version 1 may finish after version 2 is up; none starts later.
  const lateV1 = answers.slice(firstV2).filter((a) => a.version === 'v1' && a.at > switched);
  assert.equal(lateV1, [], 'no answer from version 1 once version 2 was answering');
  assert.equal((await statusOf(server.url)).model_version_status, [
    { version: '2', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
  ]);
  // Version 1's weights were disposed: the same architecture again holds as many tensors.
  assert.is(tf.memory().numTensors, tensorsWithV1, 'no tensor leaked across the swap');
  await server.close();
  await rm(join(base, 'digits', '2'), { recursive: true });
  await cp(pristine, join(base, 'digits', '1'), { recursive: true });
});

test('a version being replaced finishes its in-flight requests first (UNLOADING), then ends', async () => {
  const server = await serve({ pollSeconds: 0 });
  const lease = server.registry.acquire('digits', { version: 1 });
  await publish(join(base, 'digits'), 2, join(base, 'digits', '1'));
  await server.registry.refresh();
  const states = (await statusOf(server.url)).model_version_status.map((v: { version: string; state: string }) => `${v.version} ${v.state}`);
  assert.equal(states, ['2 AVAILABLE', '1 UNLOADING']);
  const direct = await request(`${server.url}/v1/models/digits/versions/1:predict`, { body });
  assert.is(direct.status, 404, 'an UNLOADING version takes no new requests');
  assert.match(direct.json.error, 'Servable not found for request: Specific(digits, 1); version 1 is UNLOADING');
  // The held version still computes (its weights are not disposed under the request).
  const still = await lease.servable.predict({ format: 'row', signatureName: '', rows: 1, exampleShape: [8, 8, 1], values: new Float32Array(64) });
  assert.is(still[0].values.length, 10);
  lease.release();
  assert.equal(
    (await statusOf(server.url)).model_version_status.map((v: { version: string; state: string }) => `${v.version} ${v.state}`),
    ['2 AVAILABLE', '1 END'],
  );
  await server.close();
  await rm(join(base, 'digits', '2'), { recursive: true });
});

test('half-written versions are never served: no manifest yet, a corrupt shard, a broken manifest', async () => {
  const server = await serve({ pollSeconds: 0 });
  const modelDir = join(base, 'digits');
  const v3 = join(modelDir, '3');
  const predictOk = async () => {
    const r = await request(`${server.url}/v1/models/digits:predict`, { body });
    assert.is(r.status, 200, r.text);
    return versionOf(r.json.predictions);
  };
  const status3 = async () => (await request(`${server.url}/v1/models/digits/versions/3`)).json.model_version_status?.[0];

  // Copied file by file, manifest last (as a careless `cp -r` might): not loaded until it is there.
  await cp(staged, v3, { recursive: true, filter: (src) => !src.endsWith('manifest.json') });
  await mkdir(join(modelDir, '.tmp-ignored'), { recursive: true });
  await mkdir(join(modelDir, 'latest'), { recursive: true });
  await server.registry.refresh();
  assert.equal(await status3(), {
    version: '3',
    state: 'START',
    status: { error_code: 'OK', error_message: 'waiting for manifest.json: a version is loaded once its manifest exists and every file matches it' },
  });
  assert.is(await predictOk(), 'v1');
  assert.is((await request(`${server.url}/v1/models/digits/versions/3:predict`, { body })).status, 404);

  // The manifest arrives but a shard differs from it: END with DATA_LOSS, version 1 keeps serving.
  const shard = join(v3, 'tfjs-graph', 'group1-shard1of1.bin');
  const good = await readFile(shard);
  const bad = Buffer.from(good);
  bad[100] ^= 0xff;
  await writeFile(shard, bad);
  await cp(join(staged, 'manifest.json'), join(v3, 'manifest.json'));
  await server.registry.refresh();
  const failed = await status3();
  assert.is(failed.state, 'END');
  assert.is(failed.status.error_code, 'DATA_LOSS');
  assert.match(failed.status.error_message, 'model "digits" version 3');
  assert.match(failed.status.error_message, 'tfjs-graph/group1-shard1of1.bin does not match manifest.json (sha256 ');
  assert.is(await predictOk(), 'v1');
  // Nothing changed on disk: the failed version is not retried at every poll.
  const failures = server.metrics.loads.get({ model: 'digits', result: 'error' });
  await server.registry.refresh();
  assert.is((await status3()).state, 'END');
  assert.is(server.metrics.loads.get({ model: 'digits', result: 'error' }), failures, 'no second attempt');

  // Fixed in place: its files changed, so it is verified again and replaces version 1.
  await writeFile(shard, good);
  await server.registry.refresh();
  assert.is((await status3()).state, 'AVAILABLE');
  assert.is(await predictOk(), 'v2');
  const states = (await statusOf(server.url)).model_version_status.map((v: { version: string; state: string }) => `${v.version} ${v.state}`);
  assert.equal(states, ['3 AVAILABLE', '1 END']);

  // A manifest that is not JSON (cut short) and one listing a missing file.
  for (const [version, damage, message] of [
    [4, async (dir: string) => writeFile(join(dir, 'manifest.json'), '{"files": {'), 'manifest.json is not valid JSON'],
    [5, async (dir: string) => rm(join(dir, 'onnx', 'model.onnx')), 'onnx/model.onnx is listed in manifest.json but missing'],
  ] as [number, (dir: string) => Promise<void>, string][]) {
    const tmp = join(modelDir, `.tmp-${version}`);
    await cp(staged, tmp, { recursive: true });
    await damage(tmp);
    await rename(tmp, join(modelDir, String(version)));
    await server.registry.refresh();
    const s = (await request(`${server.url}/v1/models/digits/versions/${version}`)).json.model_version_status[0];
    assert.is(s.state, 'END', `version ${version}`);
    assert.is(s.status.error_code, 'DATA_LOSS');
    assert.match(s.status.error_message, message);
    assert.is(await predictOk(), 'v2', `version 3 still serves after version ${version} failed`);
    await rm(join(modelDir, String(version)), { recursive: true });
  }
  await server.close();
  for (const d of ['3', '.tmp-ignored', 'latest']) await rm(join(modelDir, d), { recursive: true });
  await rm(join(modelDir, '1'), { recursive: true });
  await cp(pristine, join(modelDir, '1'), { recursive: true });
});

test('version policies: latest N, all, specific; a model folder served by another name; labels', async () => {
  const modelDir = join(base, 'digits');
  await publish(modelDir, 2);
  await publish(modelDir, 3, join(modelDir, '1'));
  const states = async (server: RunningServer, model = 'digits') =>
    (await statusOf(server.url, model)).model_version_status.map((v: { version: string; state: string }) => `${v.version} ${v.state}`);

  const latest2 = await serve({ pollSeconds: 0, policy: { kind: 'latest', numVersions: 2 } });
  assert.equal(await states(latest2), ['3 AVAILABLE', '2 AVAILABLE']);
  const all = await serve({ pollSeconds: 0, policy: { kind: 'all' } });
  assert.equal(await states(all), ['3 AVAILABLE', '2 AVAILABLE', '1 AVAILABLE']);
  const specific = await serve({ pollSeconds: 0, policy: { kind: 'specific', versions: [2, 9] }, labels: { digits: { stable: 2 } } });
  assert.equal(await states(specific), ['2 AVAILABLE']);
  const viaLabel = await request(`${specific.url}/v1/models/digits/labels/stable:predict`, { body });
  assert.is(versionOf(viaLabel.json.predictions), 'v2');
  // Several versions loaded: a request without a version gets the newest.
  assert.is(versionOf((await request(`${all.url}/v1/models/digits:predict`, { body })).json.predictions), 'v1');
  assert.is(versionOf((await request(`${all.url}/v1/models/digits/versions/2:predict`, { body })).json.predictions), 'v2');

  // TF Serving's --model_base_path layout: the base holds the version folders of one model.
  const single = await serve({ base: modelDir, pollSeconds: 0, modelNames: ['mnist-digits'] });
  assert.equal(await states(single, 'mnist-digits'), ['3 AVAILABLE']);
  assert.is((await request(`${single.url}/v1/models/digits`)).status, 404);
  // --model-name in the root layout serves only the models named.
  const other = join(await tempDir(), 'serving');
  await mkdir(join(other, 'a'), { recursive: true });
  await mkdir(join(other, 'b'), { recursive: true });
  await cp(join(modelDir, '1'), join(other, 'a', '1'), { recursive: true });
  await cp(join(modelDir, '1'), join(other, 'b', '1'), { recursive: true });
  const onlyB = await serve({ base: other, pollSeconds: 0, modelNames: ['b'] });
  assert.equal(onlyB.registry.modelNames(), ['b']);
  await rm(join(modelDir, '2'), { recursive: true });
  await rm(join(modelDir, '3'), { recursive: true });
});

test.run();
