import { readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseIdx, resolveIdxFiles } from '../../src/data/idx.js';
import { loadDataset } from '../../src/data/load.js';
import type { IdxDataSpec, LoadedDataset } from '../../src/data/types.js';
import { FASHION_DIR, expectInputError, removeTempDirs, tempDir } from './helpers.js';

const SUBSET: IdxDataSpec = { format: 'idx', path: FASHION_DIR, subset: { train: 2000, test: 500 } };
const testLabelsGz = join(FASHION_DIR, 't10k-labels-idx1-ubyte.gz');
const testImagesGz = join(FASHION_DIR, 't10k-images-idx3-ubyte.gz');

/**
 * A folder of four IDX files built from the real (small) Fashion-MNIST test files, with
 * `replace` written in place of some of them.
 */
async function idxFolder(replace: Partial<Record<string, Uint8Array>> = {}): Promise<string> {
  const dir = await tempDir();
  const real: Record<string, string> = {
    'train-images-idx3-ubyte.gz': testImagesGz,
    'train-labels-idx1-ubyte.gz': testLabelsGz,
    't10k-images-idx3-ubyte.gz': testImagesGz,
    't10k-labels-idx1-ubyte.gz': testLabelsGz,
  };
  for (const [name, target] of Object.entries(real)) {
    const bytes = replace[name];
    if (bytes) await writeFile(join(dir, name), bytes);
    else await symlink(target, join(dir, name));
  }
  return dir;
}

function load(spec: IdxDataSpec, seed = 1): Promise<LoadedDataset> {
  return loadDataset('fashion', spec, { baseDir: '/', seed });
}

test.after(removeTempDirs);

let first: LoadedDataset;

test('fashion-mnist subset {train: 2000, test: 500}: shapes, pixel scale, labels', async () => {
  first = await load(SUBSET);
  assert.equal(first.featureShape, [28, 28, 1]);
  assert.equal(first.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.equal(first.preprocessing, { kind: 'scale', scale: 255 });
  // Validation is 10% of the train subset; test is the test subset.
  assert.is(first.train.count, 1800);
  assert.is(first.validation.count, 200);
  assert.is(first.test.count, 500);
  for (const part of [first.train, first.validation, first.test]) {
    assert.is(part.x.length, part.count * 784);
    assert.is(part.y.length, part.count);
    let min = Infinity;
    let max = -Infinity;
    for (const v of part.x) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    assert.is(min, 0);
    assert.is(max, 1);
    const seen = new Set(part.y);
    assert.ok([...seen].every((c) => c >= 0 && c <= 9));
  }
  assert.is(new Set(first.train.y).size, 10);
  assert.is(first.sources.length, 4);
  assert.ok(first.sources.every((s) => s.path.startsWith(FASHION_DIR) && /^[0-9a-f]{64}$/.test(s.sha256)));
});

test('fashion-mnist: reading is deterministic per seed, and the seed changes the subset', async () => {
  const again = await load(SUBSET);
  assert.equal(again.train.x, first.train.x);
  assert.equal(again.train.y, first.train.y);
  assert.equal(again.test.x, first.test.x);
  assert.equal(again.validation.y, first.validation.y);
  assert.is(again.hash, first.hash);
  const other = await load(SUBSET, 2);
  assert.not.equal(other.test.y, first.test.y);
  assert.is.not(other.hash, first.hash);
});

test('IDX files are parsed as the header says', async () => {
  const labels = parseIdx(gunzipSync(await readFile(testLabelsGz)), 'labels', 1);
  assert.equal(labels.dims, [10000]);
  const images = parseIdx(gunzipSync(await readFile(testImagesGz)), 'images', 3);
  assert.equal(images.dims, [10000, 28, 28]);
  assert.is(images.data.length, 10000 * 784);
});

test('a truncated IDX file names the file, the expected and the found size', async () => {
  const labels = gunzipSync(await readFile(testLabelsGz));
  const dir = await idxFolder({ 't10k-labels-idx1-ubyte.gz': gzipSync(labels.subarray(0, 5000)) });
  await expectInputError(() => load({ format: 'idx', path: dir }), [
    join(dir, 't10k-labels-idx1-ubyte.gz'),
    '10000 uint8 values',
    'expected 10008 bytes',
    'only 5000 bytes: it is truncated',
  ]);
  // Cut inside the gzip stream rather than the IDX data.
  const raw = await readFile(testLabelsGz);
  const cut = await idxFolder({ 'train-labels-idx1-ubyte.gz': raw.subarray(0, raw.length - 100) });
  await expectInputError(() => load({ format: 'idx', path: cut }), [join(cut, 'train-labels-idx1-ubyte.gz'), 'gzip', 'truncated']);
});

test('a wrong magic number names the file and both numbers', async () => {
  const labels = Buffer.from(gunzipSync(await readFile(testLabelsGz)));
  labels.writeUInt32BE(0x00000901, 0);
  const dir = await idxFolder({ 'train-labels-idx1-ubyte.gz': gzipSync(labels) });
  await expectInputError(() => load({ format: 'idx', path: dir }), [
    join(dir, 'train-labels-idx1-ubyte.gz'),
    'expected IDX magic number 0x00000801',
    'found 0x00000901',
  ]);
  // Images where labels belong: the message points at the swap.
  const swapped = await idxFolder({ 't10k-labels-idx1-ubyte.gz': await readFile(testImagesGz) });
  await expectInputError(() => load({ format: 'idx', path: swapped }), ['found 0x00000803', 'swaps images and labels']);
});

test('uncompressed files are found under the names without .gz', async () => {
  const dir = await tempDir();
  await writeFile(join(dir, 't10k-labels-idx1-ubyte'), gunzipSync(await readFile(testLabelsGz)));
  await symlink(testImagesGz, join(dir, 't10k-images-idx3-ubyte.gz'));
  await symlink(testImagesGz, join(dir, 'train-images-idx3-ubyte.gz'));
  await symlink(testLabelsGz, join(dir, 'train-labels-idx1-ubyte.gz'));
  const files = await resolveIdxFiles(dir, { format: 'idx', path: dir }, 'f');
  assert.is(files.testLabels, join(dir, 't10k-labels-idx1-ubyte'));
  const d = await load({ format: 'idx', path: dir, subset: { train: 100, test: 50 }, split: { validation: 10 } });
  assert.is(d.train.count, 90);
  assert.is(d.validation.count, 10);
  assert.is(d.test.count, 50);
});

test('missing files say where they are expected, with the apt package for fashion-mnist', async () => {
  const empty = await tempDir();
  await expectInputError(() => load({ format: 'idx', path: empty }), [empty, 'train-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte', 'the folder is empty']);
  await expectInputError(() => load({ format: 'idx', path: join(FASHION_DIR, 'missing') }), ['apt-get install dataset-fashion-mnist']);
});

test('labels beyond the given classes, and label counts that do not match the images', async () => {
  const dir9 = await idxFolder();
  await expectInputError(() => load({ format: 'idx', path: dir9, classes: ['a', 'b'] }), ['label', 'is 9', 'only 2 classes']);
  const labels = gunzipSync(await readFile(testLabelsGz));
  const short = Buffer.from(labels.subarray(0, 8 + 9000));
  short.writeUInt32BE(9000, 4);
  const dir = await idxFolder({ 't10k-labels-idx1-ubyte.gz': short });
  await expectInputError(() => load({ format: 'idx', path: dir }), ['one label per image', '(10000)', 'found 9000 labels']);
});

test.run();
