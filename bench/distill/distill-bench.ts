import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { StoredVersion } from '../../src/artifacts/store.js';
import { pipelineBenchOptions, runPipelineBench } from '../pipeline-bench.js';
import type { Pipeline } from '../../src/spec/pipeline.js';

// Does distillation pay? Runs pipelines/fashion-distill.yaml (teacher, then the distill stage with
// its hard-label baseline) through the same engine as `pipeline run`, then prints teacher, scratch
// student and distilled student side by side and writes the figures as JSON. Stages already in the
// store are reused (a trained teacher is not retrained); --force retrains everything.
//
//   node dist/bench/distill/distill-bench.js [--backend webgpu] [--store artifacts] [--out FILE.json]
//     [--file pipelines/fashion-distill.yaml] [--set KEY=VALUE]... [--force] [--quiet]
//
// Full data takes hours on the cpu backend; a smoke run on a shrunken data set:
//   node dist/bench/distill/distill-bench.js --store /tmp/distill-bench --set data.fashion.subset.train=2000 ...

const ROOT = new URL('../../..', import.meta.url).pathname;

interface Row {
  model: 'teacher' | 'scratch student' | 'distilled student';
  testAccuracy: number;
  parameters: number;
  temperature: number | null;
  alpha: number | null;
  epochsRun: number;
  epochs: number;
  wallSeconds: number;
  backend: string;
  /** The teacher came from the store: its wall time is that of the run that trained it. */
  cached: boolean;
}

interface PartMetrics {
  test: { accuracy: number; samples: number };
  parameters: number;
  epochsRun: number;
  trainSeconds: number;
}

interface DistillMetrics {
  student: PartMetrics;
  baseline?: PartMetrics & { agreement: number };
  teacher: { stage: string; version: number; parameters: number; test: { accuracy: number } };
  agreement: number;
  gain?: number;
  distillation: { temperature: number; alpha: number; teacherLogits: { samples: number; seconds: number } };
  dataset: { name: string; train: number; validation: number; test: number };
}

const { values } = parseArgs({ options: pipelineBenchOptions(join(ROOT, 'pipelines', 'fashion-distill.yaml')) });

const distillStageOf = (p: Pipeline) => {
  const stage = [...p.stages.values()].find((s) => s.kind.kind === 'distill');
  if (!stage) throw new Error(`${values.file} has no distill stage`);
  return stage;
};
const { pipeline, store, record, wallSeconds } = await runPipelineBench(values, distillStageOf);
const distill = distillStageOf(pipeline);
const teacherName = String(distill.config.teacher);
const teacherStage = pipeline.stages.get(teacherName)!;

const versionOf = async (stage: string): Promise<{ version: StoredVersion; reused: boolean }> => {
  const entry = record.stages.find((s) => s.stage === stage)!;
  return { version: await store.openVersion(pipeline.name, stage, entry.version), reused: entry.status === 'reused' };
};
const student = await versionOf(distill.name);
const teacher = await versionOf(teacherName);
const m = JSON.parse(await readFile(join(student.version.dir, 'metrics.json'), 'utf8')) as DistillMetrics;
const teacherMetrics = JSON.parse(await readFile(join(teacher.version.dir, 'metrics.json'), 'utf8')) as { epochsRun?: number };
const epochs = Number(distill.config.epochs);
const backend = student.version.manifest.backend;

const rows: Row[] = [
  {
    model: 'teacher',
    testAccuracy: m.teacher.test.accuracy,
    parameters: m.teacher.parameters,
    temperature: null,
    alpha: null,
    epochsRun: teacherMetrics.epochsRun ?? Number(teacherStage.config.epochs),
    epochs: Number(teacherStage.config.epochs),
    wallSeconds: teacher.version.manifest.timings.durationMs / 1000,
    backend: teacher.version.manifest.backend,
    cached: teacher.reused,
  },
];
if (m.baseline) {
  rows.push({
    model: 'scratch student',
    testAccuracy: m.baseline.test.accuracy,
    parameters: m.baseline.parameters,
    temperature: null,
    alpha: 1,
    epochsRun: m.baseline.epochsRun,
    epochs,
    wallSeconds: m.baseline.trainSeconds,
    backend,
    cached: student.reused,
  });
}
rows.push({
  model: 'distilled student',
  testAccuracy: m.student.test.accuracy,
  parameters: m.student.parameters,
  temperature: m.distillation.temperature,
  alpha: m.distillation.alpha,
  epochsRun: m.student.epochsRun,
  epochs,
  wallSeconds: m.student.trainSeconds,
  backend,
  cached: student.reused,
});

const header = ['model', 'test accuracy', 'parameters', 'T', 'alpha', 'epochs', 'wall time', 'backend'];
const cells = rows.map((r) => [
  r.model,
  r.testAccuracy.toFixed(4),
  r.parameters.toLocaleString('en-US'),
  r.temperature === null ? '-' : String(r.temperature),
  r.alpha === null ? '-' : r.alpha === 1 && r.temperature === null ? '1 (labels only)' : String(r.alpha),
  r.epochsRun === r.epochs ? String(r.epochs) : `${r.epochsRun} of ${r.epochs}`,
  `${formatSeconds(r.wallSeconds)}${r.cached ? ' (stored)' : ''}`,
  r.backend,
]);
const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
const line = (c: string[]) => c.map((v, i) => (i < 2 || i > 4 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ').trimEnd();
console.log(`\nDistillation on ${m.dataset.name}: ${m.dataset.train.toLocaleString('en-US')} train / ` +
  `${m.dataset.validation.toLocaleString('en-US')} validation / ${m.dataset.test.toLocaleString('en-US')} test images` +
  (pipeline.overrides.length ? ` (overrides: ${pipeline.overrides.join(' ')})` : ''));
console.log(line(header));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const c of cells) console.log(line(c));
const gain = m.gain;
console.log(
  `\nteacher logits: once, ${m.distillation.teacherLogits.samples.toLocaleString('en-US')} samples in ` +
    `${formatSeconds(m.distillation.teacherLogits.seconds)}; top-1 agreement with the teacher: distilled ${m.agreement.toFixed(4)}` +
    (m.baseline ? `, scratch ${m.baseline.agreement.toFixed(4)}` : ''),
);
if (gain !== undefined) {
  console.log(
    `distillation gain: ${gain >= 0 ? '+' : ''}${(gain * 100).toFixed(2)} points of test accuracy ` +
      `(${gain > 0 ? 'the distilled student beats the scratch student' : 'the distilled student does NOT beat the scratch student'})`,
  );
}

const out = resolve(values.out ?? `distill-bench-${record.id}.json`);
await writeFile(
  out,
  `${JSON.stringify(
    {
      benchmark: 'distill',
      date: new Date().toISOString(),
      host: hostname(),
      file: values.file,
      overrides: pipeline.overrides,
      runId: record.id,
      store: store.root,
      backend,
      dataset: m.dataset,
      rows,
      gain: gain ?? null,
      beatsScratch: gain === undefined ? null : gain > 0,
      agreement: { distilled: m.agreement, scratch: m.baseline?.agreement ?? null },
      teacherLogits: m.distillation.teacherLogits,
      wallSeconds,
      versions: { teacher: teacher.version.version, student: student.version.version },
    },
    null,
    2,
  )}\n`,
);
console.log(`results: ${out}`);

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(2)} h`;
}

// A webgpu backend holds the GPU device open, which keeps Node running after the last line.
process.exit(0);
