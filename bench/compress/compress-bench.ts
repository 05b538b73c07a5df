import { access, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pipelineBenchOptions, runPipelineBench } from '../pipeline-bench.js';
import { storedWeightSizes, type ByteSizes } from '../../src/compress/quantization.js';
import { MODEL_JSON } from '../../src/models/io.js';

// How much smaller, at what accuracy? Runs pipelines/fashion-compress.yaml (teacher -> distill ->
// prune -> quantize -> evaluate) through the same engine as `pipeline run`, then prints each
// stage's test accuracy and weight sizes (raw, and all shards concatenated + gzip -9, as
// ../shared/REFERENCE.md measures them) against the teacher's, and writes the figures as JSON.
// Stages already in the store are reused; --force reruns everything.
//
//   node dist/bench/compress/compress-bench.js [--backend webgpu] [--store artifacts] [--out FILE.json]
//     [--file pipelines/fashion-compress.yaml] [--reference teacher] [--set KEY=VALUE]... [--force] [--quiet]
//
// Full data takes hours on the cpu backend. A smoke run on the cpu backend in about a minute
// shrinks the data and swaps the CNNs for small MLPs (see the README's "Compression" section).

const ROOT = new URL('../../..', import.meta.url).pathname;

interface Row {
  stage: string;
  kind: string;
  version: number;
  status: string;
  testAccuracy: number | null;
  /** Test accuracy minus the reference stage's, in points (0.01 = 1 point). */
  accuracyDelta: number | null;
  /** Null for stages that write no model (evaluate). */
  raw: number | null;
  gzip: number | null;
  /** Reference gzip bytes over this stage's. */
  gzipRatio: number | null;
  sparsity: number | null;
}

const { values } = parseArgs({
  options: {
    ...pipelineBenchOptions(join(ROOT, 'pipelines', 'fashion-compress.yaml')),
    reference: { type: 'string', default: 'teacher' },
  },
});

const { pipeline, store, record, wallSeconds } = await runPipelineBench(values, (p) => {
  if (!p.stages.has(values.reference)) {
    throw new Error(`--reference ${values.reference}: no such stage in ${values.file} (stages: ${p.graph.order.join(', ')})`);
  }
});

const exists = (path: string) => access(path).then(() => true, () => false);
const measured: Omit<Row, 'accuracyDelta' | 'gzipRatio'>[] = [];
for (const entry of record.stages) {
  const version = await store.openVersion(pipeline.name, entry.stage, entry.version);
  const headline = version.manifest.metrics;
  const modelJson = join(version.dir, MODEL_JSON);
  const sizes: ByteSizes | undefined = (await exists(modelJson)) ? await storedWeightSizes(modelJson) : undefined;
  let sparsity: number | null = null;
  if (entry.kind === 'prune') {
    const metrics = JSON.parse(await readFile(join(version.dir, 'metrics.json'), 'utf8')) as { sparsity: { prunedLayers: number } };
    sparsity = metrics.sparsity.prunedLayers;
  }
  measured.push({
    stage: entry.stage,
    kind: entry.kind,
    version: version.version,
    status: entry.status,
    testAccuracy: typeof headline.test_accuracy === 'number' ? headline.test_accuracy : null,
    raw: sizes?.raw ?? null,
    gzip: sizes?.gzip ?? null,
    sparsity,
  });
}
const reference = measured.find((r) => r.stage === values.reference)!;
const rows: Row[] = measured.map((r) => ({
  ...r,
  accuracyDelta: r.testAccuracy !== null && reference.testAccuracy !== null ? r.testAccuracy - reference.testAccuracy : null,
  gzipRatio: r.gzip && reference.gzip ? reference.gzip / r.gzip : null,
}));

// The target of issue #4: the last model written (what ships) >= 10x smaller gzipped, <= 1 point lower.
const shipped = [...rows].reverse().find((r) => r.gzip !== null)!;
const target = {
  stage: shipped.stage,
  gzipRatio: shipped.gzipRatio,
  accuracyDelta: shipped.accuracyDelta,
  met: (shipped.gzipRatio ?? 0) >= 10 && (shipped.accuracyDelta ?? -1) >= -0.01,
};

const fmt = (v: number | null, f: (x: number) => string) => (v === null ? '-' : f(v));
const table = [
  ['stage', 'kind', 'test acc', `vs ${values.reference}`, 'sparsity', 'raw bytes', 'gzip bytes', 'smaller (gzip)'],
  ...rows.map((r) => [
    `${r.stage} v${r.version}`,
    r.kind,
    fmt(r.testAccuracy, (x) => x.toFixed(4)),
    fmt(r.accuracyDelta, (x) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)} pt`),
    fmt(r.sparsity, (x) => x.toFixed(3)),
    fmt(r.raw, (x) => x.toLocaleString('en-US')),
    fmt(r.gzip, (x) => x.toLocaleString('en-US')),
    fmt(r.gzipRatio, (x) => `${x.toFixed(1)}x`),
  ]),
];
const widths = table[0].map((_, c) => Math.max(...table.map((row) => row[c].length)));
console.log(`\n${pipeline.name} (${values.file}${pipeline.overrides.length ? `, ${pipeline.overrides.join(' ')}` : ''}):`);
for (const row of table) console.log(row.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));
console.log(
  `target (>= 10x smaller gzipped, <= 1 point below ${values.reference}): ${target.met ? 'met' : 'NOT met'} by "${shipped.stage}" ` +
    `(${fmt(target.gzipRatio, (x) => x.toFixed(1))}x, ${fmt(target.accuracyDelta, (x) => `${(100 * x).toFixed(2)} pt`)})`,
);

const out = {
  bench: 'compress',
  file: values.file,
  overrides: pipeline.overrides,
  backend: record.backend,
  runId: record.id,
  host: hostname(),
  date: new Date().toISOString(),
  wallSeconds,
  reference: values.reference,
  stages: rows,
  target,
};
if (values.out) {
  await writeFile(values.out, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`figures written to ${values.out}`);
}
