import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MANIFEST_FILE } from '../../src/artifacts/manifest.js';
import { S3Remote } from '../../src/artifacts/s3-remote.js';
import { LocalArtifactStore, type StoredVersion } from '../../src/artifacts/store.js';
import { IntegrityError, PipelineError } from '../../src/errors.js';
import { sha256 } from '../../src/util/hash.js';
import { manifestDraft, rejects, tempDir } from '../helpers.js';
import { startS3Server, useS3Server, type S3TestServer } from './s3-server.js';

// S3Remote against a real S3-protocol server (s3rver on loopback) through the real AWS SDK,
// configured from the environment as a user's would be.

let server: S3TestServer;
let prefixes = 0;

useS3Server(test, (started) => (server = started));

/** A remote under a prefix of its own, so tests do not see each other's objects. */
function freshRemote(): { remote: S3Remote; prefix: string } {
  const prefix = `t${++prefixes}/cache`;
  return { remote: new S3Remote({ bucket: server.bucket, prefix }), prefix };
}

/** A local version of demo/<stage> holding `files`; its fingerprint is the hash of `tag`. */
async function localVersion(store: LocalArtifactStore, stage: string, files: Record<string, string>, tag = stage): Promise<StoredVersion> {
  return store.publish('demo', stage, async (dir) => {
    for (const [name, text] of Object.entries(files)) {
      await mkdir(dirname(join(dir, name)), { recursive: true });
      await writeFile(join(dir, name), text);
    }
    return manifestDraft(sha256(tag));
  });
}

async function keys(prefix: string): Promise<string[]> {
  const listed = await server.client.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: `${prefix}/` }));
  return (listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length + 1)).sort();
}

async function text(key: string): Promise<string> {
  return (await server.client.send(new GetObjectCommand({ Bucket: server.bucket, Key: key }))).Body!.transformToString();
}

const newLocal = async () => new LocalArtifactStore(await tempDir());

test('a version goes up as content-addressed blobs plus the local manifest, byte for byte, and comes back intact', async () => {
  const { remote, prefix } = freshRemote();
  const local = await newLocal();
  const v = await localVersion(local, 'net', { 'model.json': '{"a":1}', 'weights/shard.bin': 'x'.repeat(5000) });
  const result = await remote.upload(v);
  assert.equal(result, { version: 1, created: true, uploaded: { files: 2, bytes: 5007 }, present: { files: 0, bytes: 0 } });
  const blob = (s: string) => `.blobs/sha256/${sha256(s).slice(0, 2)}/${sha256(s)}`;
  assert.equal(await keys(prefix), [
    blob('x'.repeat(5000)),
    blob('{"a":1}'),
    `demo/net/.fingerprints/${sha256('net')}/v1`,
    'demo/net/v1/manifest.json',
  ].sort());
  assert.is(await text(`${prefix}/demo/net/v1/manifest.json`), await readFile(join(v.dir, MANIFEST_FILE), 'utf8'));

  const found = await remote.findByFingerprint('demo', 'net', sha256('net'));
  assert.ok(found, 'not found by fingerprint');
  assert.is(found.remote, `${remote.url}/demo/net/v1`);
  const into = await tempDir();
  assert.equal(await remote.download(found, into), { files: 2, bytes: 5007 });
  assert.is(await readFile(join(into, 'weights/shard.bin'), 'utf8'), 'x'.repeat(5000));
  assert.is(await remote.findByFingerprint('demo', 'net', sha256('other')), undefined);
});

test('identical files are stored once: a second version uploads only its new files; the same output twice uploads nothing', async () => {
  const { remote, prefix } = freshRemote();
  const local = await newLocal();
  const shared = 'w'.repeat(3000);
  await remote.upload(await localVersion(local, 'net', { 'shard.bin': shared, 'a.json': '1' }, 'fp1'));
  const second = await remote.upload(await localVersion(local, 'net', { 'shard.bin': shared, 'a.json': '2' }, 'fp2'));
  assert.equal(second, { version: 2, created: true, uploaded: { files: 1, bytes: 1 }, present: { files: 1, bytes: 3000 } });
  assert.is((await keys(prefix)).filter((k) => k.startsWith('.blobs/')).length, 3);

  // The same output published again (say by another machine, as its own v1): nothing is written.
  const elsewhere = await localVersion(await newLocal(), 'net', { 'shard.bin': shared, 'a.json': '2' }, 'fp2');
  server.resetTraffic();
  const again = await remote.upload(elsewhere);
  assert.equal(again, { version: 2, created: false, uploaded: { files: 0, bytes: 0 }, present: { files: 2, bytes: 3001 } });
  assert.is(server.traffic.byMethod.PUT, undefined, 'something was uploaded');
});

test('a tampered blob is refused on download, naming the object and the expected and actual sha256', async () => {
  const { remote, prefix } = freshRemote();
  const v = await localVersion(await newLocal(), 'net', { 'shard.bin': 'good bytes' });
  await remote.upload(v);
  const key = `${prefix}/.blobs/sha256/${sha256('good bytes').slice(0, 2)}/${sha256('good bytes')}`;
  await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: 'evil bytes' }));
  const found = (await remote.findByFingerprint('demo', 'net', sha256('net')))!;
  const into = await tempDir();
  const err = await rejects(() => remote.download(found, into), `s3://${server.bucket}/${key} (shard.bin of demo/net@v1) does not match its manifest`);
  assert.instance(err, IntegrityError);
  assert.match(err.message, `expected sha256 ${sha256('good bytes')} (10 bytes), got sha256 ${sha256('evil bytes')} (10 bytes)`);
  assert.match(err.message, 'delete the object');
});

test('a longer object is cut off at the size the manifest lists', async () => {
  const { remote, prefix } = freshRemote();
  await remote.upload(await localVersion(await newLocal(), 'net', { 'shard.bin': 'short' }));
  const key = `${prefix}/.blobs/sha256/${sha256('short').slice(0, 2)}/${sha256('short')}`;
  await server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: key, Body: 'short'.repeat(100_000) }));
  const found = (await remote.findByFingerprint('demo', 'net', sha256('net')))!;
  await rejects(async () => remote.download(found, await tempDir()), 'is longer than the 5 bytes its manifest lists');
});

test('a hostile manifest cannot name files outside the version, nor claim to be another version', async () => {
  const { remote, prefix } = freshRemote();
  const local = await newLocal();
  const v = await localVersion(local, 'net', { 'a.bin': 'a' });
  const manifest = JSON.parse(await readFile(join(v.dir, MANIFEST_FILE), 'utf8'));
  const put = (version: number, body: unknown) =>
    server.client.send(new PutObjectCommand({ Bucket: server.bucket, Key: `${prefix}/demo/net/v${version}/manifest.json`, Body: JSON.stringify(body) }));
  await put(1, { ...manifest, files: { '../../.bashrc': manifest.files['a.bin'] } });
  await put(2, { ...manifest, version: 1 });
  await rejects(() => remote.openVersion('demo', 'net', 1), /would leave the version's folder/);
  await rejects(() => remote.openVersion('demo', 'net', 2), /its version is 1, its key says 2/);
});

test('a version appears only with its manifest: an upload failing midway leaves none, and the retry sends only what is missing', async () => {
  const { remote, prefix } = freshRemote();
  const v = await localVersion(await newLocal(), 'net', { 'a.bin': 'first file', 'b.bin': 'second file' });
  const failing = sha256('second file');
  server.failRequests((r) => r.method === 'PUT' && r.key.endsWith(failing));
  const err = await rejects(() => remote.upload(v), `uploading b.bin of demo/net@v1 to s3://${server.bucket}/${prefix}/.blobs/sha256/`);
  assert.instance(err, PipelineError);
  assert.equal((await remote.listStage('demo', 'net')).versions, []);
  assert.is(await remote.findByFingerprint('demo', 'net', sha256('net')), undefined);
  assert.ok((await keys(prefix)).every((k) => k.startsWith('.blobs/')), 'something besides blobs was written');

  server.failRequests(undefined);
  const retry = await remote.upload(v);
  assert.equal(retry.uploaded, { files: 1, bytes: 11 });
  assert.equal(retry.present, { files: 1, bytes: 10 });
  assert.is(retry.version, 1);
});

test('two machines publishing the same stage at once get different numbers, and both versions survive', async () => {
  const { remote } = freshRemote();
  const a = await localVersion(await newLocal(), 'net', { 'w.bin': 'from machine a' }, 'a');
  const b = await localVersion(await newLocal(), 'net', { 'w.bin': 'from machine b' }, 'b');
  assert.is(a.version, b.version);
  const results = await Promise.all([remote.upload(a), remote.upload(b)]);
  assert.equal(results.map((r) => r.version).sort(), [1, 2]);
  for (const [v, r] of [[a, results[0]], [b, results[1]]] as const) {
    const there = await remote.openVersion('demo', 'net', r.version);
    assert.is(there.manifest.fingerprint, v.manifest.fingerprint);
    assert.is(there.manifest.version, r.version);
  }
});

test('without conditional writes on the server, a taken number is still never overwritten', async () => {
  const plain = await startS3Server({ conditionalWrites: false, bucket: 'plain' });
  try {
    const remote = new S3Remote({ bucket: 'plain', prefix: '' }, plain.client);
    const a = await localVersion(await newLocal(), 'net', { 'w.bin': 'a' }, 'a');
    const b = await localVersion(await newLocal(), 'net', { 'w.bin': 'b' }, 'b');
    assert.is((await remote.upload(a)).version, 1);
    assert.is((await remote.upload(b)).version, 2);
    assert.is((await remote.openVersion('demo', 'net', 1)).manifest.fingerprint, sha256('a'));
  } finally {
    await plain.close();
  }
});

test('a version whose index entry is missing (killed just after its manifest) is still found by fingerprint', async () => {
  const { remote, prefix } = freshRemote();
  await remote.upload(await localVersion(await newLocal(), 'net', { 'w.bin': 'w' }));
  await server.client.send(new DeleteObjectCommand({ Bucket: server.bucket, Key: `${prefix}/demo/net/.fingerprints/${sha256('net')}/v1` }));
  assert.is((await remote.findByFingerprint('demo', 'net', sha256('net')))?.version, 1);
});

test('pipelines and stages are listed from the remote; a missing bucket is named in a clear error', async () => {
  const { remote } = freshRemote();
  const local = await newLocal();
  await remote.upload(await localVersion(local, 'net', { 'w.bin': 'w' }));
  await remote.upload(await localVersion(local, 'check', { 'm.json': '{}' }));
  assert.equal(await remote.listPipelines(), ['demo']);
  assert.equal(await remote.listStages('demo'), ['check', 'net']);
  const missing = new S3Remote({ bucket: 'no-such-bucket', prefix: 'x' });
  await rejects(() => missing.listPipelines(), /bucket "no-such-bucket" does not exist on the S3 endpoint http:\/\/127\.0\.0\.1:\d+: create it/);
});

test.run();
