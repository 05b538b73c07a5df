import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sizesOf, type ByteSizes } from '../compress/quantization.js';
import type { Manifest, RunRecord } from '../artifacts/manifest.js';
import type { ArtifactStore, StoredVersion } from '../artifacts/store.js';
import { MODEL_JSON } from '../models/io.js';
import type { ClassificationMetrics } from '../train/metrics.js';
import type { EpochLogs } from '../train/progress.js';
import { exists } from '../util/fs.js';
import { TOOL_VERSION } from '../version.js';
import { readStoredModel, weightHistogram, type ModelSummary, type StoredModel, type WeightHistogram } from './weights.js';

// Everything a run's report shows, gathered from the store: the run record, and for each stage
// version it used, the manifest, metrics.json, history.json and the model files. The HTML side
// (html.ts) only lays this out.

/** metrics.json is free-form per kind (src/stages/*.ts); the layout reads the fields it knows. */
export type Metrics = Record<string, any>;

/** Histograms per stage are capped: a model with dozens of kernels would bury the page. */
const MAX_HISTOGRAMS = 8;

export interface StageReport {
  stage: string;
  kind: string;
  status: string;
  version?: number;
  durationMs?: number;
  reason?: string;
  error?: string;
  published?: string;
  headline: Record<string, unknown>;
  /** Where the version is, for the reader (relative to the working directory when shorter). */
  where?: string;
  /** Why the version's details are missing, e.g. it was deleted or changed since the run. */
  problem?: string;
  manifest?: Omit<Manifest, 'files'> & { fileCount: number; bytes: number };
  metrics?: Metrics;
  history?: EpochLogs[];
  /** distill: the same student trained on labels alone. */
  baselineHistory?: EpochLogs[];
  /** The classification figures worth a confusion matrix, and what they measure. */
  evaluation?: { title: string; metrics: ClassificationMetrics };
  model?: ModelSummary;
  sizes?: ByteSizes;
  /** Fraction of the model's weights that are exactly zero. */
  zeros?: number;
  histograms?: { from: string; weights: WeightHistogram[]; omitted: number };
}

/** One model-producing stage on the way from teacher to the shipped model. */
export interface ChainRow {
  stage: string;
  kind: string;
  version: number;
  accuracy?: number;
  parameters: number;
  zeros: number;
  raw: number;
  gzip: number;
}

export interface ReportData {
  generatedAt: string;
  tool: string;
  run: Omit<RunRecord, 'stages'>;
  stages: StageReport[];
  chain: ChainRow[];
}

export async function collectReport(store: ArtifactStore, record: RunRecord): Promise<ReportData> {
  const { stages: entries, ...run } = record;
  const models = new ModelCache();
  const stages: StageReport[] = [];
  for (const entry of entries) {
    const report: StageReport = {
      stage: entry.stage,
      kind: entry.kind,
      status: entry.status,
      version: entry.version,
      durationMs: entry.durationMs,
      reason: entry.reason,
      error: entry.error,
      published: entry.published,
      headline: entry.metrics ?? {},
    };
    stages.push(report);
    if (entry.version === undefined) continue;
    try {
      const version = await store.openVersion(record.pipeline, entry.stage, entry.version);
      if (version.remote) {
        report.problem =
          `its files are on ${version.remote} only (the run did not read them): ` +
          `\`pipeline pull --pipeline ${record.pipeline} --stage ${entry.stage}@v${entry.version}\` brings them here`;
      }
      await describeVersion(store, version, report, models);
    } catch (err) {
      report.problem = (err as Error).message;
    }
  }
  const chain: ChainRow[] = stages
    .filter((s) => s.model && s.sizes && s.version !== undefined)
    .map((s) => ({
      stage: s.stage,
      kind: s.kind,
      version: s.version!,
      accuracy: typeof s.headline.test_accuracy === 'number' ? s.headline.test_accuracy : s.evaluation?.metrics.accuracy,
      parameters: s.model!.parameters,
      zeros: s.zeros ?? 0,
      raw: s.sizes!.raw,
      gzip: s.sizes!.gzip,
    }));
  return { generatedAt: new Date().toISOString(), tool: `tfjs-pipeline ${TOOL_VERSION}`, run, stages, chain };
}

async function describeVersion(store: ArtifactStore, v: StoredVersion, report: StageReport, models: ModelCache): Promise<void> {
  const { files, ...manifest } = v.manifest;
  const digests = Object.values(files);
  report.where = store.describe(v.dir);
  report.manifest = { ...manifest, fileCount: digests.length, bytes: digests.reduce((n, d) => n + d.bytes, 0) };
  report.metrics = await readJson(join(v.dir, 'metrics.json'));
  report.history = await readJson(join(v.dir, 'history.json'));
  report.baselineHistory = await readJson(join(v.dir, 'baseline-history.json'));
  report.evaluation = evaluationOf(report.kind, report.metrics);
  const model = await models.get(v.dir);
  if (model) {
    report.model = model.summary;
    // prune and quantize measured their output already; gzip -9 of a large model takes a while.
    const measured = report.metrics?.size?.after;
    report.sizes = measured?.raw === model.weightData.byteLength ? { raw: measured.raw, gzip: measured.gzip } : sizesOf(model.weightData);
    let zeros = 0;
    let total = 0;
    for (const values of model.weights.values()) {
      total += values.length;
      for (const x of values) if (x === 0) zeros++;
    }
    report.zeros = total ? zeros / total : 0;
  }
  const compared = comparedWeights(report.kind, report.metrics);
  const input = Object.values(v.manifest.inputs.stages)[0];
  if (model && compared.length && input) {
    const source = await store.openVersion(v.pipeline, input.stage, input.version);
    const before = await models.get(source.dir);
    if (before) {
      const weights: WeightHistogram[] = [];
      for (const name of compared.slice(0, MAX_HISTOGRAMS)) {
        const a = before.weights.get(name);
        const b = model.weights.get(name);
        if (a && b && a.length === b.length) weights.push(weightHistogram(name, shapeOf(report.metrics, name), a, b));
      }
      report.histograms = { from: `${input.stage}@v${input.version}`, weights, omitted: Math.max(0, compared.length - MAX_HISTOGRAMS) };
    }
  }
}

/** The weights a compression stage changed, in model order: pruned kernels, quantized tensors. */
function comparedWeights(kind: string, metrics: Metrics | undefined): string[] {
  if (kind === 'prune') {
    return ((metrics?.sparsity?.layers ?? []) as { weight: string; excluded: boolean }[]).filter((l) => !l.excluded).map((l) => l.weight);
  }
  if (kind === 'quantize') {
    return ((metrics?.tensors ?? []) as { name: string; encoding: string }[]).filter((t) => t.encoding !== 'float32').map((t) => t.name);
  }
  return [];
}

function shapeOf(metrics: Metrics | undefined, weight: string): number[] {
  const rows = [...(metrics?.sparsity?.layers ?? []), ...(metrics?.tensors ?? [])] as { weight?: string; name?: string; shape: number[] }[];
  return rows.find((r) => r.weight === weight || r.name === weight)?.shape ?? [];
}

/** Which of a kind's metrics.json figures describe the model it wrote (see src/stages/*.ts). */
export function evaluationOf(kind: string, m: Metrics | undefined): StageReport['evaluation'] {
  if (!m) return undefined;
  const pick = (title: string, metrics: unknown) =>
    metrics && typeof metrics === 'object' && Array.isArray((metrics as ClassificationMetrics).confusionMatrix)
      ? { title, metrics: metrics as ClassificationMetrics }
      : undefined;
  switch (kind) {
    case 'distill':
      return pick('student, test split', m.student?.test);
    case 'prune':
    case 'quantize':
      return pick('test split, after', m.test?.after);
    case 'evaluate':
      return pick(`${m.split ?? 'test'} split of ${m.model ? `${m.model.stage}@v${m.model.version}` : 'the model'}`, m);
    default:
      return pick('test split', m.test) ?? pick('test split, after', m.test?.after) ?? pick('test split', m);
  }
}

/** Models read once per report: a pruned stage's input is often the stage before it in the run. */
class ModelCache {
  private readonly byDir = new Map<string, Promise<StoredModel | undefined>>();

  get(dir: string): Promise<StoredModel | undefined> {
    if (!this.byDir.has(dir)) {
      const path = join(dir, MODEL_JSON);
      this.byDir.set(dir, exists(path).then((found) => (found ? readStoredModel(path) : undefined)));
    }
    return this.byDir.get(dir)!;
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  if (!(await exists(path))) return undefined;
  return JSON.parse(await readFile(path, 'utf8')) as T;
}
