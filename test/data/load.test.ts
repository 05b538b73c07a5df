import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCsv } from '../../src/data/csv.js';
import { applyPreprocessing, hashDataSource, loadDataset } from '../../src/data/load.js';
import type { CsvDataSpec, DataSplit, LoadedDataset } from '../../src/data/types.js';
import { DATA_DIR, FASHION_DIR, ROOT, expectInputError, removeTempDirs, tempDir } from './helpers.js';

const DIGITS: CsvDataSpec = { format: 'csv', path: 'data/digits.csv.gz', header: false, label: 64, shape: [8, 8, 1] };
const IRIS: CsvDataSpec = { format: 'csv', path: 'iris.csv', header: false, skipRows: 1, label: 4, classes: ['setosa', 'versicolor', 'virginica'] };
const atRoot = { baseDir: ROOT, seed: 42 };
const atData = { baseDir: DATA_DIR, seed: 42 };

test.after(removeTempDirs);

function columnMeans(part: DataSplit, features: number): number[] {
  const sum = new Array<number>(features).fill(0);
  for (let i = 0; i < part.x.length; i++) sum[i % features] += part.x[i];
  return sum.map((s) => s / part.count);
}

/** Each sample as text with its label, sorted: the multiset of rows, independent of order. */
function rowsOf(parts: DataSplit[], features: number): string[] {
  const out: string[] = [];
  for (const p of parts) {
    for (let i = 0; i < p.count; i++) out.push(`${Array.from(p.x.subarray(i * features, (i + 1) * features)).join(',')}|${p.y[i]}`);
  }
  return out.sort();
}

let raw: LoadedDataset;

test('digits: 1797 rows, 10 classes, feature shape [8, 8, 1], default split 70/10/20', async () => {
  raw = await loadDataset('digits', DIGITS, atRoot);
  assert.equal(raw.featureShape, [8, 8, 1]);
  assert.equal(raw.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.is(raw.train.count + raw.validation.count + raw.test.count, 1797);
  assert.is(raw.test.count, 359);
  assert.is(raw.validation.count, 180);
  assert.is(raw.train.x.length, raw.train.count * 64);
  assert.equal(raw.preprocessing, { kind: 'none' });
  assert.equal(raw.sources, [{ path: join(DATA_DIR, 'digits.csv.gz'), sha256: raw.sources[0].sha256, bytes: 57512 }]);
});

test('digits: the splits together are exactly the rows of the file', async () => {
  const table = await parseCsv(gunzipSync(await readFile(join(DATA_DIR, 'digits.csv.gz'))), 'digits', { ...DIGITS }, 'digits');
  const file = rowsOf([{ x: table.x, y: table.y, count: table.count }], 64);
  assert.equal(rowsOf([raw.train, raw.validation, raw.test], 64), file);
});

test('digits: normalisation constants come from the train split only', async () => {
  const std = await loadDataset('digits', { ...DIGITS, normalize: 'standard' }, atRoot);
  assert.is(std.preprocessing.kind, 'standard');
  if (std.preprocessing.kind !== 'standard') return;
  const trainMeans = columnMeans(raw.train, 64);
  const allMeans = columnMeans({ x: Float32Array.from([...raw.train.x, ...raw.validation.x, ...raw.test.x]), y: new Int32Array(0), count: 1797 }, 64);
  for (let f = 0; f < 64; f++) assert.ok(Math.abs(std.preprocessing.mean[f] - trainMeans[f]) < 1e-9, `feature ${f}`);
  assert.ok(std.preprocessing.mean.some((m, f) => Math.abs(m - allMeans[f]) > 1e-3), 'mean over all rows would differ');
  // Train is centred exactly; the other splits only roughly.
  for (const m of columnMeans(std.train, 64)) assert.ok(Math.abs(m) < 1e-5);
  // The same split, whatever the normalisation; inference preprocessing reproduces the loaded values.
  assert.equal(std.test.y, raw.test.y);
  assert.equal(applyPreprocessing(raw.test.x, std.featureShape, std.preprocessing), std.test.x);

  const mm = await loadDataset('digits', { ...DIGITS, normalize: 'minmax' }, atRoot);
  if (mm.preprocessing.kind !== 'minmax') throw new Error('expected minmax');
  assert.ok(mm.train.x.every((v) => v >= 0 && v <= 1));
  const trainMax = new Array<number>(64).fill(0);
  raw.train.x.forEach((v, i) => (trainMax[i % 64] = Math.max(trainMax[i % 64], v)));
  for (let f = 0; f < 64; f++) assert.is(mm.preprocessing.max[f], trainMax[f] || mm.preprocessing.min[f] + 1);
});

test('iris: relative path, skipRows 1, named classes, counted split sizes', async () => {
  const iris = await loadDataset('iris', { ...IRIS, split: { validation: 15, test: 0.2 } }, atData);
  assert.equal(iris.featureShape, [4]);
  assert.equal(iris.classes, ['setosa', 'versicolor', 'virginica']);
  assert.equal([iris.train.count, iris.validation.count, iris.test.count], [105, 15, 30]);
});

test('splits are deterministic per seed; limit keeps a seeded subset', async () => {
  const a = await loadDataset('iris', IRIS, atData);
  const b = await loadDataset('iris', IRIS, atData);
  assert.equal(b.train, a.train);
  assert.equal(b.test, a.test);
  const c = await loadDataset('iris', IRIS, { ...atData, seed: 43 });
  assert.not.equal(c.test, a.test);
  const limited = await loadDataset('iris', { ...IRIS, limit: 50 }, atData);
  assert.equal([limited.train.count, limited.validation.count, limited.test.count], [35, 5, 10]);
  await expectInputError(() => loadDataset('iris', { ...IRIS, shape: [3, 2] }, atData), [join(DATA_DIR, 'iris.csv'), 'shape [3,2] holds 6', '4 feature columns']);
});

test('hash: equals hashDataSource, stable, blind to key order and spelled-out defaults', async () => {
  const loaded = await loadDataset('iris', IRIS, atData);
  const cheap = await hashDataSource('iris', IRIS, atData);
  assert.is(cheap.hash, loaded.hash);
  assert.equal(cheap.sources, loaded.sources);
  assert.is((await hashDataSource('iris', IRIS, atData)).hash, cheap.hash);
  const reordered = { classes: IRIS.classes, label: 4, skipRows: 1, header: false, path: 'iris.csv', format: 'csv' } as CsvDataSpec;
  assert.is((await hashDataSource('iris', reordered, atData)).hash, cheap.hash);
  assert.is((await hashDataSource('iris', { ...IRIS, missing: 'error', split: { test: 0.2 } }, atData)).hash, cheap.hash);
  // An absolute path to the same file is the same data.
  assert.is((await hashDataSource('iris', { ...IRIS, path: join(DATA_DIR, 'iris.csv') }, atRoot)).hash, cheap.hash);
});

test('hash: changes with the file bytes, the spec, the seed and the name', async () => {
  const dir = await tempDir();
  const copy = join(dir, 'iris.csv');
  await copyFile(join(DATA_DIR, 'iris.csv'), copy);
  const opts = { baseDir: dir, seed: 42 };
  const base = (await hashDataSource('iris', IRIS, opts)).hash;
  assert.is(base, (await hashDataSource('iris', IRIS, atData)).hash);
  const hashes = [
    (await hashDataSource('iris', { ...IRIS, normalize: 'standard' }, opts)).hash,
    (await hashDataSource('iris', { ...IRIS, split: { validation: 0.2 } }, opts)).hash,
    (await hashDataSource('iris', IRIS, { ...opts, seed: 1 })).hash,
    (await hashDataSource('flowers', IRIS, opts)).hash,
  ];
  const text = await readFile(copy, 'utf8');
  await writeFile(copy, text.replace('5.1,3.5,1.4,0.2,0', '5.1,3.5,1.4,0.3,0'));
  hashes.push((await hashDataSource('iris', IRIS, opts)).hash);
  assert.is(new Set([base, ...hashes]).size, hashes.length + 1);
  assert.is((await loadDataset('iris', IRIS, opts)).hash, hashes[hashes.length - 1]);
});

test('hash: IDX fingerprints the four files without parsing them', async () => {
  const spec = { format: 'idx' as const, path: FASHION_DIR, subset: { train: 100, test: 100 } };
  const h = await hashDataSource('fashion', spec, atRoot);
  assert.equal(h.sources.map((s) => s.path.slice(FASHION_DIR.length + 1)), [
    'train-images-idx3-ubyte.gz',
    'train-labels-idx1-ubyte.gz',
    't10k-images-idx3-ubyte.gz',
    't10k-labels-idx1-ubyte.gz',
  ]);
  assert.is((await loadDataset('fashion', spec, atRoot)).hash, h.hash);
  assert.is.not((await hashDataSource('fashion', { ...spec, subset: { train: 100, test: 99 } }, atRoot)).hash, h.hash);
});

test('spec errors: unknown format, missing path, missing file', async () => {
  await expectInputError(() => loadDataset('x', { format: 'parquet', path: 'a' } as unknown as CsvDataSpec, atRoot), ['data set "x"', '"parquet"', '"csv" or "idx"']);
  await expectInputError(() => hashDataSource('x', { ...IRIS, path: '' }, atRoot), ['data set "x"', 'path']);
  await expectInputError(() => loadDataset('x', { ...IRIS, path: 'nope.csv' }, atData), [join(DATA_DIR, 'nope.csv'), 'not found']);
  await expectInputError(() => hashDataSource('x', { ...IRIS, path: 'nope.csv' }, atData), [join(DATA_DIR, 'nope.csv'), 'not found']);
});

test.run();
