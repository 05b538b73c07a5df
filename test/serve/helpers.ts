import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as assert from 'uvu/assert';
import { loadDataset } from '../../src/data/load.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { cli, ROOT, tempDir } from '../helpers.js';

// What the serve tests share: real exported versions (the quickstart run into a temp store),
// real inputs (the quickstart's digits test split), a reference model loaded with stock tfjs
// from the version's files, and a plain-fetch client as TF Serving's REST docs describe it.

export const QUICKSTART = join(ROOT, 'pipelines', 'quickstart.yaml');

/** Runs the quickstart into a new store; returns the store (its serving folder is <store>/serving). */
export async function quickstartStore(args: string[] = []): Promise<string> {
  const store = await tempDir('tfjs-pipeline-serve-');
  const run = await cli(['run', QUICKSTART, '--store', store, '--quiet', ...args]);
  assert.is(run.code, 0, run.stderr + run.stdout);
  return store;
}

/** `count` preprocessed digits from the quickstart's test split, flat and as [8][8][1] nested lists. */
export async function digitsExamples(count: number): Promise<{ x: Float32Array; examples: number[][][][] }> {
  const pipeline = await loadPipeline(QUICKSTART);
  const data = await loadDataset('digits', pipeline.data.digits, { baseDir: pipeline.baseDir, seed: pipeline.seed });
  const x = data.test.x.slice(0, count * 64);
  const examples = Array.from({ length: count }, (_, i) => nest(x.subarray(i * 64, (i + 1) * 64), [8, 8, 1]) as number[][][]);
  return { x, examples };
}

export function nest(values: ArrayLike<number>, shape: number[]): unknown {
  if (shape.length === 0) return values[0];
  const stride = shape.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: shape[0] }, (_, i) => nest(Array.prototype.slice.call(values, i * stride, (i + 1) * stride), shape.slice(1)));
}

/** A tfjs graph model.json and its shards as tf.io.fromMemory takes them (read here, not by the code under test). */
export async function readGraphModel(dir: string): Promise<tf.io.ModelArtifacts> {
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as tf.io.ModelJSON;
  const shards = await Promise.all(json.weightsManifest.flatMap((g) => g.paths).map((p) => readFile(join(dir, p))));
  const weights = Buffer.concat(shards);
  return {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer,
    signature: json.signature,
  };
}

/** The version's tfjs-graph model loaded with stock tf.loadGraphModel, as a client-side reference. */
export async function referenceModel(versionDir: string): Promise<{ predict(x: Float32Array, rows: number): Promise<Float32Array>; dispose(): void }> {
  const model = await tf.loadGraphModel(tf.io.fromMemory(await readGraphModel(join(versionDir, 'tfjs-graph'))));
  return {
    async predict(x, rows) {
      const input = tf.tensor(x, [rows, 8, 8, 1]);
      const y = model.predict(input) as tf.Tensor;
      const out = (await y.data()) as Float32Array;
      tf.dispose([input, y]);
      return out;
    },
    dispose: () => model.dispose(),
  };
}

export async function request(
  url: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; json: any; text: string; headers: Headers }> {
  const res = await fetch(url, { method: init.method ?? (init.body === undefined ? 'GET' : 'POST'), body: init.body, headers: init.headers });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

export const flat = (v: unknown): number[] => (Array.isArray(v) ? v.flatMap(flat) : [v as number]);

/** Every served value must be the float32 the model computed, exactly (the JSON text round-trips). */
export function assertSameFloats(got: number[], want: Float32Array, label: string, tolerance = 0): void {
  assert.is(got.length, want.length, `${label}: number of values`);
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(Math.fround(got[i]) - want[i]);
    if (!(d <= tolerance)) assert.unreachable(`${label}: value ${i} is ${got[i]}, the model computes ${want[i]} (difference ${d})`);
  }
}

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus text format 0.0.4 strictly enough to catch a malformed page: HELP and TYPE
 * once per family and before its samples, valid names and label syntax, numeric values, and
 * histograms whose buckets are cumulative, end at +Inf and equal _count.
 */
export function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  assert.ok(text.endsWith('\n'), 'the page ends with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/gy;
  for (const l of text.slice(0, -1).split('\n')) {
    if (l.startsWith('# HELP ')) {
      const name = l.split(' ')[2];
      assert.not.ok(helps.has(name), `HELP for ${name} appears once`);
      helps.add(name);
      continue;
    }
    if (l.startsWith('# TYPE ')) {
      const [, , name, type] = l.split(' ');
      assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(type), `TYPE of ${name}: ${type}`);
      assert.not.ok(types.has(name), `TYPE for ${name} appears once`);
      types.set(name, type);
      continue;
    }
    const m = line.exec(l);
    assert.ok(m, `sample line is well-formed: ${JSON.stringify(l)}`);
    const labels: Record<string, string> = {};
    if (m![3]) {
      label.lastIndex = 0;
      let rest = m![3];
      while (rest.length) {
        label.lastIndex = 0;
        const lm = label.exec(rest);
        assert.ok(lm, `labels are well-formed: ${m![3]}`);
        labels[lm![1]] = lm![2];
        rest = rest.slice(lm![0].length);
      }
    }
    const family = m![1].replace(/_(bucket|sum|count)$/, '');
    assert.ok(types.has(m![1]) || types.has(family), `sample ${m![1]} follows its TYPE line`);
    samples.push({ name: m![1], labels, value: Number(m![4].replace('+Inf', 'Infinity')) });
  }
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, `${family}${key}: buckets are cumulative`);
      assert.is(buckets.at(-1)!.labels.le, '+Inf', `${family}${key}: the last bucket is +Inf`);
      const count = samples.find((x) => x.name === `${family}_count` && JSON.stringify(x.labels) === key);
      assert.is(count?.value, buckets.at(-1)!.value, `${family}${key}: _count equals the +Inf bucket`);
    }
  }
  return { types, samples };
}

export const metric = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));

/** The one sample of `name` with these labels (0 when absent and `absentIsZero`). */
export function value(samples: Sample[], name: string, labels: Record<string, string> = {}, absentIsZero = false): number {
  const found = metric(samples, name, labels);
  if (found.length === 0 && absentIsZero) return 0;
  assert.is(found.length, 1, `one sample ${name}${JSON.stringify(labels)}; the page has ${samples.filter((s) => s.name === name).map((s) => JSON.stringify(s.labels)).join(' ')}`);
  return found[0].value;
}
