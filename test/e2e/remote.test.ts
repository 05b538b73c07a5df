import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startS3Server, type S3TestServer } from '../artifacts/s3-server.js';
import { BIN, ROOT, cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

// The CLI against an S3 remote (s3rver on loopback), configured the way a user would: AWS_* variables
// and `--store s3://bucket/prefix` or `store:` in the pipeline file.

let server: S3TestServer;
let prefixes = 0;

test.before(async () => {
  server = await startS3Server();
});
test.after(async () => {
  await server.close();
  await removeTempDirs();
});

const IRIS = fixture('iris.yaml');
const run = (args: string[], env: Record<string, string> = {}) => cli(args, { env: { ...server.env, ...env } });

async function keys(prefix: string): Promise<string[]> {
  const listed = await server.client.send(new ListObjectsV2Command({ Bucket: server.bucket, Prefix: `${prefix}/` }));
  return (listed.Contents ?? []).map((o) => o.Key!.slice(prefix.length + 1));
}

test('a second machine (a fresh --cache) reuses every stage the first computed', async () => {
  const url = server.storeUrl(`e${++prefixes}`);
  const first = await run(['run', IRIS, '--store', url, '--cache', await tempDir()]);
  assert.is(first.code, 0, first.stderr);
  const second = await run(['run', IRIS, '--store', url, '--cache', await tempDir()]);
  assert.is(second.code, 0, second.stderr);
  assert.match(second.stdout, 'net (train): reused v1');
  assert.match(second.stdout, 'check (evaluate): reused v1');
  assert.match(second.stdout, '2 reused');
});

test('SIGKILL between the blobs and the manifest leaves no version on the remote; the next run uploads it', async () => {
  const prefix = `e${++prefixes}`;
  const url = server.storeUrl(prefix);
  const cache = await tempDir();
  const child = spawn(process.execPath, [BIN, 'run', IRIS, '--store', url, '--cache', cache], {
    cwd: ROOT,
    env: { ...process.env, ...server.env, TFJS_PIPELINE_FAULT: 'remote-before-manifest' },
  });
  await new Promise<void>((resolve) => child.stderr.on('data', (d: Buffer) => d.toString().includes('fault point reached') && resolve()));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.on('close', resolve));
  const written = await keys(prefix);
  assert.ok(written.length > 0 && written.every((k) => k.startsWith('.blobs/')), `not only blobs: ${written}`);
  const plan = await run(['plan', IRIS, '--store', url, '--cache', await tempDir()]);
  assert.match(plan.stdout, /net +train +run .*never ran/);

  const again = await run(['run', IRIS, '--store', url, '--cache', cache]);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stdout, 'net (train): reused v1');
  assert.ok((await keys(prefix)).includes('iris/net/v1/manifest.json'), 'net was not uploaded');
});

test('push and pull say what moved and what was already there; pull FILE fetches what its plan reuses', async () => {
  const url = server.storeUrl(`e${++prefixes}`);
  const local = await tempDir();
  assert.is((await run(['run', IRIS, '--store', local])).code, 0);
  const push = await run(['push', '--store', local, '--remote', url]);
  assert.is(push.code, 0, push.stderr);
  assert.match(push.stdout, /uploaded iris\/net@v1 as v1: 5 files, [\d.]+ KiB \([\d,]+ bytes\)/);
  assert.match(push.stdout, `uploaded 2 versions to ${url}: 6 files`);
  const again = await run(['push', '--store', local, '--remote', url]);
  assert.match(again.stdout, 'already there: iris/net@v1 (v1)');
  assert.match(again.stdout, `uploaded 0 versions to ${url}: 0 files, 0 bytes; already there: 2 versions, 6 files`);

  const one = await run(['pull', '--store', url, '--cache', await tempDir(), '--pipeline', 'iris', '--stage', 'net@v1']);
  assert.is(one.code, 0, one.stderr);
  assert.match(one.stdout, 'downloaded iris/net@v1 as v1: 5 files');
  assert.match(one.stdout, 'downloaded 1 version');
  const planned = await run(['pull', IRIS, '--store', url, '--cache', await tempDir()]);
  assert.is(planned.code, 0, planned.stderr);
  assert.match(planned.stdout, 'downloaded iris/check@v1 as v1');
  assert.match(planned.stdout, 'downloaded 2 versions');
  const nothing = await run(['push', '--store', local, '--remote', url, '--stage', 'nope']);
  assert.is(nothing.code, 2);
  assert.match(nothing.stderr, 'nothing to push: no stored version of stage "nope"');
});

test("the pipeline file's store: is used unless --store is given", async () => {
  const prefix = `e${++prefixes}`;
  const dir = await tempDir();
  const yaml = (await readFile(IRIS, 'utf8'))
    .replace('../../data/iris.csv', join(ROOT, 'data', 'iris.csv'))
    .replace('backend: cpu', `backend: cpu\nstore: ${server.storeUrl(prefix)}`);
  await writeFile(join(dir, 'iris.yaml'), yaml);
  const result = await run(['run', join(dir, 'iris.yaml'), '--cache', join(dir, 'cache')]);
  assert.is(result.code, 0, result.stderr);
  assert.ok((await keys(prefix)).includes('iris/check/v1/manifest.json'), 'nothing went to the file\'s store');
  const overridden = await run(['plan', join(dir, 'iris.yaml'), '--store', join(dir, 'elsewhere')]);
  assert.match(overridden.stdout, /net +train +run/);
});

test('a bad store URL exits 2 naming it; an unreachable endpoint fails naming the endpoint', async () => {
  const bad = await run(['run', IRIS, '--store', 's3://Bad_Bucket/x']);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, '--store: "s3://Bad_Bucket/x": "Bad_Bucket" is not an S3 bucket name');
  const down = await run(['plan', IRIS, '--store', server.storeUrl('down'), '--cache', await tempDir()], { AWS_ENDPOINT_URL: 'http://127.0.0.1:9' });
  assert.is(down.code, 1, down.stderr);
  assert.match(down.stderr, 'cannot reach the S3 endpoint http://127.0.0.1:9 (ECONNREFUSED): check AWS_ENDPOINT_URL');
});

test.run();
