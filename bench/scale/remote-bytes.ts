import { readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Manifest, RunRecord } from '../../src/artifacts/manifest.js';
import { startS3Server, type Traffic } from '../../test/artifacts/s3-server.js';
import { ROOT, cli, removeTempDirs, tempDir } from '../../test/helpers.js';

// What a remote cache hit moves, against the full run that filled the remote: the same pipeline run
// twice through the real CLI against an S3 remote (s3rver on loopback, the real AWS SDK), each time
// with a fresh local cache, as two machines would. Bytes are counted by the server: request bodies
// in (uploads), response bodies out (downloads, listings, manifests), per HTTP method, and the blob
// bytes alone. Wall time is the whole command, process start included.
//
//   node dist/bench/scale/remote-bytes.js [--pipeline pipelines/quickstart.yaml] [--out FILE.json]

interface Measured {
  label: string;
  wallSeconds: number;
  stages: Record<string, string>;
  requests: Record<string, number>;
  uploadedBytes: number;
  downloadedBytes: number;
  /** Blob bodies only (the stage files), without manifests, listings and index entries. */
  blobBytesUploaded: number;
  blobBytesDownloaded: number;
  /** Bytes of the stage versions the run left in its local cache. */
  localVersionBytes: number;
}

const { values } = parseArgs({
  options: {
    pipeline: { type: 'string', default: 'pipelines/quickstart.yaml' },
    out: { type: 'string' },
  },
});

async function versionBytes(cache: string): Promise<number> {
  let total = 0;
  for (const pipeline of await readdir(cache).catch(() => [] as string[])) {
    for (const stage of await readdir(join(cache, pipeline)).catch(() => [] as string[])) {
      for (const v of await readdir(join(cache, pipeline, stage)).catch(() => [] as string[])) {
        if (!/^v\d+$/.test(v)) continue;
        const manifest = JSON.parse(await readFile(join(cache, pipeline, stage, v, 'manifest.json'), 'utf8')) as Manifest;
        total += Object.values(manifest.files).reduce((n, d) => n + d.bytes, 0);
      }
    }
  }
  return total;
}

async function lastRun(cache: string): Promise<RunRecord> {
  for (const pipeline of await readdir(cache)) {
    const runs = join(cache, pipeline, 'runs');
    const records = (await readdir(runs).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).sort();
    if (records.length) return JSON.parse(await readFile(join(runs, records.at(-1)!), 'utf8')) as RunRecord;
  }
  throw new Error(`no run record in ${cache}`);
}

function summarize(label: string, traffic: Traffic, wallSeconds: number, record: RunRecord, localVersionBytes: number): Measured {
  const blobs = traffic.log.filter((r) => r.key.includes('/.blobs/'));
  return {
    label,
    wallSeconds: Number(wallSeconds.toFixed(2)),
    stages: Object.fromEntries(record.stages.map((s) => [s.stage, `${s.status}@v${s.version}`])),
    requests: Object.fromEntries(Object.entries(traffic.byMethod).map(([m, c]) => [m, c.requests])),
    uploadedBytes: traffic.bytesIn,
    downloadedBytes: traffic.bytesOut,
    blobBytesUploaded: blobs.filter((r) => r.method === 'PUT').reduce((n, r) => n + r.bytesIn, 0),
    blobBytesDownloaded: blobs.filter((r) => r.method === 'GET').reduce((n, r) => n + r.bytesOut, 0),
    localVersionBytes,
  };
}

const server = await startS3Server({ bucket: 'bench' });
try {
  const file = resolve(ROOT, values.pipeline!);
  const runs: Measured[] = [];
  for (const label of ['full run (empty remote)', 'cache hit (fresh machine)']) {
    const cache = await tempDir('remote-bytes-');
    server.resetTraffic();
    const started = performance.now();
    const result = await cli(['run', file, '--store', server.storeUrl('bench'), '--cache', cache, '--quiet'], { env: server.env });
    const wall = (performance.now() - started) / 1000;
    if (result.code !== 0) throw new Error(`${label}: pipeline run exited ${result.code}:\n${result.stderr}`);
    runs.push(summarize(label, server.traffic, wall, await lastRun(cache), await versionBytes(cache)));
  }
  const [full, hit] = runs;
  const report = {
    pipeline: values.pipeline,
    measuredAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, server: 's3rver 3 on loopback' },
    runs,
    cacheHitVsFullRun: {
      bytesMoved: Number(((hit.uploadedBytes + hit.downloadedBytes) / (full.uploadedBytes + full.downloadedBytes)).toFixed(3)),
      wallTime: Number((hit.wallSeconds / full.wallSeconds).toFixed(3)),
    },
  };
  const json = `${JSON.stringify(report, null, 2)}\n`;
  process.stdout.write(json);
  if (values.out) await writeFile(values.out, json);
} finally {
  await server.close();
  await removeTempDirs();
}
