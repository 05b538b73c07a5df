import { GetObjectCommand } from '@aws-sdk/client-s3';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { startS3Server, type S3TestServer } from '../artifacts/s3-server.js';
import { BIN, ROOT, cli, fixture, removeTempDirs, tempDir } from '../helpers.js';
import { startRedisServer, type RedisTestServer } from '../helpers/redis-server.js';

// `run --executor queue` with `pipeline worker` processes, as a user runs them: a real
// redis-server and an S3 server (s3rver) on loopback, workers with their own cache folders.

const FILE = fixture('iris-queue.yaml');
const STAGES = ['net', 'wide', 'check', 'check-val', 'check-wide'];
// Short stall settings, so a killed worker's job goes back to the queue within seconds.
const STALL = { TFJS_PIPELINE_QUEUE_LOCK_MS: '4000', TFJS_PIPELINE_QUEUE_STALLED_MS: '1000', TFJS_PIPELINE_QUEUE_MAX_STALLED: '2' };

let redis: RedisTestServer;
let s3: S3TestServer;
let workers: { child: ChildProcess; exited: Promise<unknown> }[] = [];
let prefixes = 0;

test.before(async () => {
  redis = await startRedisServer();
  s3 = await startS3Server();
});
test.after.each(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
  workers = [];
});
test.after(async () => {
  await redis.close();
  await s3.close();
  await removeTempDirs();
});

async function startWorkers(n: number): Promise<ChildProcess[]> {
  const started: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const child = spawn(process.execPath, [BIN, 'worker', '--redis', redis.url, '--cache', await tempDir(), '--quiet'], {
      cwd: ROOT,
      env: { ...process.env, ...s3.env, ...STALL },
    });
    let out = '';
    child.stderr.on('data', (d) => process.stderr.write(d));
    started.push(new Promise((resolve) => child.stdout.on('data', (d) => (out += d) && out.includes('taking jobs') && resolve())));
    workers.push({ child, exited: new Promise((resolve) => child.once('exit', resolve)) });
  }
  await Promise.all(started);
  return workers.map((w) => w.child);
}

async function remoteFiles(prefix: string, stage: string): Promise<Record<string, string>> {
  const got = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/iris-queue/${stage}/v1/manifest.json` }));
  const manifest = JSON.parse(await got.Body!.transformToString());
  return Object.fromEntries(Object.entries(manifest.files as Record<string, { sha256: string }>).map(([f, d]) => [f, d.sha256]));
}

{
  test('3 workers compute the same files as a local run; a second submission reuses everything', async () => {
    await startWorkers(3);
    const prefix = `q${++prefixes}`;
    const url = s3.storeUrl(prefix);
    const queued = await cli(['run', FILE, '--executor', 'queue', '--redis', redis.url, '--store', url, '--cache', await tempDir()], { env: s3.env });
    assert.is(queued.code, 0, queued.stdout + queued.stderr);
    assert.match(queued.stdout, '5 stages, 5 to run on workers, 0 cached');
    assert.match(queued.stdout, /▶ net: started on worker \S+:\d+/);
    assert.match(queued.stdout, /net: epoch 3\/3 loss/);
    assert.match(queued.stdout, 'done: 5 computed on workers, 0 reused');

    const local = await tempDir();
    const run = await cli(['run', FILE, '--store', local]);
    assert.is(run.code, 0, run.stderr);
    // history.json and a training's metrics.json record seconds, and model.json has tfjs's layer
    // names, numbered by how many models the process built before (a full local run builds two,
    // a worker one; `run --only` differs the same way). The weights and evaluations must match.
    const timed = (files: Record<string, string>) =>
      Object.fromEntries(Object.entries(files).filter(([f]) => !['history.json', 'metrics.json', 'model.json'].includes(f)));
    for (const stage of STAGES) {
      const manifest = JSON.parse(await readFile(join(local, 'iris-queue', stage, 'v1', 'manifest.json'), 'utf8'));
      const localFiles = Object.fromEntries(Object.entries(manifest.files as Record<string, { sha256: string }>).map(([f, d]) => [f, d.sha256]));
      assert.equal(timed(await remoteFiles(prefix, stage)), timed(localFiles), `stage ${stage}`);
    }

    const again = await cli(['run', FILE, '--executor', 'queue', '--redis', redis.url, '--store', url, '--cache', await tempDir()], { env: s3.env });
    assert.is(again.code, 0, again.stderr);
    assert.match(again.stdout, '5 stages, 0 to run on workers, 5 cached');
    assert.match(again.stdout, '• check-val (evaluate): reused v1');
  });

  test('a worker killed mid-stage: another runs the stage, and every version on the remote is whole', async () => {
    const [a, b, c] = await startWorkers(3);
    const byPid = new Map([a, b, c].map((w) => [w.pid!, w]));
    const prefix = `q${++prefixes}`;
    const url = s3.storeUrl(prefix);
    const submit = spawn(
      process.execPath,
      [BIN, 'run', FILE, '--set', 'net.epochs=150', '--executor', 'queue', '--redis', redis.url, '--store', url, '--cache', await tempDir()],
      { cwd: ROOT, env: { ...process.env, ...s3.env } },
    );
    let out = '';
    let err = '';
    let killed: number | undefined;
    submit.stderr.on('data', (d) => (err += d));
    submit.stdout.on('data', (d) => {
      out += d;
      const first = /net: epoch 1\/150 .*\(worker \S+:(\d+)\)/.exec(out);
      if (first && killed === undefined) {
        killed = Number(first[1]);
        byPid.get(killed)!.kill('SIGKILL');
      }
    });
    const code = await new Promise((resolve) => submit.once('close', resolve));
    assert.is(code, 0, out + err);
    assert.ok(killed, 'no epoch of net was reported');
    assert.match(out, '⟲ net: its worker stopped answering; the job is back in the queue');
    const done = /✔ net: v1 computed on worker \S+:(\d+)/.exec(out);
    assert.ok(done && Number(done[1]) !== killed, `net did not finish on another worker:\n${out}`);

    // Every version on the remote downloads whole, each file checked against its sha256.
    const pulled = await cli(['pull', '--store', url, '--cache', await tempDir(), '--pipeline', 'iris-queue'], { env: s3.env });
    assert.is(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, 'downloaded 5 versions');
    assert.not.match(pulled.stdout, 'net@v2');
  });

  test('a sweep of 6 runs on 3 workers: each shared stage computed once, every run recorded and ranked', async () => {
    await startWorkers(3);
    const url = s3.storeUrl(`q${++prefixes}`);
    const cache = await tempDir();
    const out = join(await tempDir(), 'leaderboard.json');
    const swept = await cli(
      ['sweep', FILE, '--grid', 'net.batchSize=8,16,32', '--grid', 'wide.epochs=2,3', '--metric', 'check.test_accuracy',
        '--executor', 'queue', '--redis', redis.url, '--store', url, '--cache', cache, '--out', out],
      { env: s3.env },
    );
    assert.is(swept.code, 0, swept.stdout + swept.stderr);
    assert.match(swept.stdout, /sweep \S+ of iris-queue: 6 runs, 6 at a time/);
    const result = JSON.parse(await readFile(out, 'utf8'));
    const runs = result.runs as { status: string; rank?: number; stages: Record<string, string> }[];
    assert.is(runs.length, 6);
    assert.ok(runs.every((r) => r.status === 'succeeded' && r.rank !== undefined), JSON.stringify(runs));
    // 3 batch sizes of net and 2 epoch counts of wide: computed that many times over all 6 runs, the
    // other runs reusing them (a fingerprint's Redis lock), never computed twice at once.
    const ran = (stage: string) => runs.filter((r) => r.stages[stage].startsWith('ran')).length;
    assert.is(ran('net'), 3, JSON.stringify(runs.map((r) => r.stages)));
    assert.is(ran('wide'), 2, JSON.stringify(runs.map((r) => r.stages)));
    const listed = await cli(['runs', 'iris-queue', '--store', url, '--cache', cache], { env: s3.env });
    assert.is(listed.code, 0, listed.stderr);
    assert.is(listed.stdout.split('\n').filter((l) => /succeeded/.test(l)).length, 6, listed.stdout);
  });

  test('--executor queue without --redis exits 2; an unreachable Redis fails naming it', async () => {
    const none = await cli(['run', FILE, '--executor', 'queue', '--store', await tempDir()]);
    assert.is(none.code, 2);
    assert.match(none.stderr, '--executor queue needs --redis redis://host:port');
    const down = await cli(['run', FILE, '--executor', 'queue', '--redis', 'redis://127.0.0.1:9', '--store', await tempDir()]);
    assert.is(down.code, 1);
    assert.match(down.stderr, 'cannot reach Redis at redis://127.0.0.1:9 (ECONNREFUSED): start redis-server there or fix --redis');
  });
}

test.run();
