import { PutObjectCommand } from '@aws-sdk/client-s3';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CachedArtifactStore, pullVersions, pushVersions } from '../../src/artifacts/cached-store.js';
import { S3Remote } from '../../src/artifacts/s3-remote.js';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { runPipeline } from '../../src/engine/run.js';
import { IntegrityError } from '../../src/errors.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { exists } from '../../src/util/fs.js';
import { sha256 } from '../../src/util/hash.js';
import { fixture, rejects, tempDir } from '../helpers.js';
import { useS3Server, type S3TestServer } from './s3-server.js';

// Real runs of the iris pipeline (net -> check) on "machines" that share nothing but an S3 remote:
// each is a CachedArtifactStore over its own local folder, talking to s3rver through the real SDK.

const quiet = new TerminalReporter({ quiet: true });
let server: S3TestServer;
let prefixes = 0;

useS3Server(test, (started) => (server = started));

const freshPrefix = () => `c${++prefixes}`;
const remoteAt = (prefix: string) => new S3Remote({ bucket: server.bucket, prefix });
const machine = async (prefix: string, dir?: string) => new CachedArtifactStore(new LocalArtifactStore(dir ?? (await tempDir())), remoteAt(prefix));
const iris = (sets: string[] = []) => loadPipeline(fixture('iris.yaml'), sets);
const statuses = (record: { stages: { stage: string; status: string; version?: number }[] }) =>
  Object.fromEntries(record.stages.map((s) => [s.stage, `${s.status}@v${s.version}`]));
const localVersions = async (store: CachedArtifactStore, stage: string) => (await store.local.listVersions('iris', stage)).map((v) => v.version);

test('two machines share stages through the remote: the second trains nothing and downloads only the stage it keeps', async () => {
  const prefix = freshPrefix();
  const a = await machine(prefix);
  assert.equal(statuses(await runPipeline(await iris(), { store: a, reporter: quiet })), { net: 'ran@v1', check: 'ran@v1' });

  server.resetTraffic();
  const b = await machine(prefix);
  const second = await runPipeline(await iris(), { store: b, reporter: quiet });
  assert.equal(statuses(second), { net: 'reused@v1', check: 'reused@v1' });
  assert.is(server.traffic.byMethod.PUT, undefined, 'the cache hit uploaded something');
  // The final stage's files came down (its result is what the run is for); net's stayed remote.
  const check = await a.local.openVersion('iris', 'check', 1);
  const fetched = server.traffic.log.filter((r) => r.method === 'GET' && r.key.includes('/.blobs/')).map((r) => r.key.split('/').at(-1));
  assert.equal(fetched.sort(), Object.values(check.manifest.files).map((d) => d.sha256).sort());
  assert.equal(await localVersions(b, 'check'), [1]);
  assert.equal(await localVersions(b, 'net'), []);
  const manifest = (store: CachedArtifactStore) => readFile(join(store.root, 'iris', 'check', 'v1', 'manifest.json'), 'utf8');
  assert.is(await manifest(b), await manifest(a));

  // net is still listed, and shown from the remote; the run's report was written all the same.
  const net = await b.openVersion('iris', 'net');
  assert.is(net.remote, `s3://${server.bucket}/${prefix}/iris/net/v1`);
  assert.is(net.manifest.fingerprint, (await a.local.openVersion('iris', 'net')).manifest.fingerprint);
  assert.ok(await exists(b.reportPath('iris', second.id)), 'no report');
});

test('a stage that runs downloads its reused inputs, and its new version goes up for the next machine', async () => {
  const prefix = freshPrefix();
  await runPipeline(await iris(), { store: await machine(prefix), reporter: quiet });
  const b = await machine(prefix);
  const record = await runPipeline(await iris(['check.split=validation']), { store: b, reporter: quiet });
  assert.equal(statuses(record), { net: 'reused@v1', check: 'ran@v2' });
  assert.equal(await localVersions(b, 'net'), [1]);
  assert.equal((await remoteAt(prefix).listStage('iris', 'check')).versions, [1, 2]);
  const c = await runPipeline(await iris(['check.split=validation']), { store: await machine(prefix), reporter: quiet });
  assert.equal(statuses(c), { net: 'reused@v1', check: 'reused@v2' });
});

test('a local version the remote lacks is uploaded when a run reuses it', async () => {
  const prefix = freshPrefix();
  const dir = await tempDir();
  await runPipeline(await iris(), { store: new LocalArtifactStore(dir), reporter: quiet });
  assert.equal(await remoteAt(prefix).listPipelines(), []);
  const record = await runPipeline(await iris(), { store: await machine(prefix, dir), reporter: quiet });
  assert.equal(statuses(record), { net: 'reused@v1', check: 'reused@v1' });
  assert.equal((await remoteAt(prefix).listStage('iris', 'net')).versions, [1]);
  assert.equal((await remoteAt(prefix).listStage('iris', 'check')).versions, [1]);
});

test('an upload failing after the local publish fails the run, naming the version and the fix; the next run uploads it', async () => {
  const prefix = freshPrefix();
  const a = await machine(prefix);
  server.failRequests((r) => r.method === 'PUT' && r.key.endsWith('/manifest.json'));
  const err = await rejects(async () => runPipeline(await iris(), { store: a, reporter: quiet }), 'iris/net@v1 is stored in');
  assert.match(err.message, `but uploading it to s3://${server.bucket}/${prefix} failed`);
  assert.match(err.message, '`pipeline push`');
  assert.equal((await remoteAt(prefix).listStage('iris', 'net')).versions, []);

  server.failRequests(undefined);
  const rerun = await runPipeline(await iris(), { store: a, reporter: quiet });
  assert.equal(statuses(rerun), { net: 'reused@v1', check: 'ran@v1' });
  assert.equal((await remoteAt(prefix).listStage('iris', 'net')).versions, [1]);
});

test('a tampered remote object is refused, naming it and both sha256; nothing of the version appears locally', async () => {
  const prefix = freshPrefix();
  const a = await machine(prefix);
  await runPipeline(await iris(), { store: a, reporter: quiet });
  const expected = (await a.local.openVersion('iris', 'check', 1)).manifest.files['metrics.json'].sha256;
  const key = `${prefix}/.blobs/sha256/${expected.slice(0, 2)}/${expected}`;
  const forged = '{"accuracy": 1}\n';
  await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: forged }));

  const b = await machine(prefix);
  const err = await rejects(async () => runPipeline(await iris(), { store: b, reporter: quiet }), `s3://${server.bucket}/${key} (metrics.json of iris/check@v1)`);
  assert.instance(err, IntegrityError);
  assert.match(err.message, `expected sha256 ${expected}`);
  assert.match(err.message, `got sha256 ${sha256(forged)}`);
  assert.equal(await localVersions(b, 'check'), []);
  assert.equal(await readdir(join(b.root, 'iris', 'check')).catch(() => []), []);
});

test('push uploads what the remote lacks, pull brings versions back byte for byte; identical files move once', async () => {
  const prefix = freshPrefix();
  const remote = remoteAt(prefix);
  const a = new LocalArtifactStore(await tempDir());
  await runPipeline(await iris(), { store: a, reporter: quiet });
  const pushed = await pushVersions(a, remote, {});
  assert.equal(pushed.map((t) => `${t.stage}@v${t.from}->v${t.to}:${t.created}`), ['check@v1->v1:true', 'net@v1->v1:true']);
  assert.ok(pushed.every((t) => t.moved.files > 0));
  assert.ok((await pushVersions(a, remote, {})).every((t) => !t.created));

  // Seeded cpu training is bit for bit: a forced rerun writes the same weights, which stay put.
  await runPipeline(await iris(), { store: a, reporter: quiet, force: true });
  const shard = (await a.openVersion('iris', 'net', 2)).manifest.files['group1-shard1of1.bin'];
  const [second] = await pushVersions(a, remote, { pipeline: 'iris', stage: 'net', version: 2 });
  assert.is(second.to, 2);
  assert.ok(second.present.bytes >= shard.bytes, `the shard was uploaded again (${JSON.stringify(second)})`);

  const b = new LocalArtifactStore(await tempDir());
  await rejects(() => pullVersions(b, remote, { pipeline: 'iris', stage: 'check', version: 2 }), 'nothing to pull: no version of stage "check" v2 of pipeline "iris"');
  const pulled = await pullVersions(b, remote, { pipeline: 'iris' });
  assert.equal(pulled.map((t) => `${t.stage}@v${t.to}:${t.created}`), ['check@v1:true', 'net@v1:true', 'net@v2:true']);
  for (const [stage, version] of [['net', 1], ['net', 2], ['check', 1]] as const) {
    const file = (root: string) => readFile(join(root, 'iris', stage, `v${version}`, 'manifest.json'), 'utf8');
    assert.is(await file(b.root), await file(a.root));
    await b.openVersion('iris', stage, version);
  }
  assert.ok((await pullVersions(b, remote, {})).every((t) => !t.created));
});

test.run();
