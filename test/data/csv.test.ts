import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseCsv } from '../../src/data/csv.js';
import { loadDataset } from '../../src/data/load.js';
import type { CsvDataSpec } from '../../src/data/types.js';
import { DATA_DIR, expectInputError, removeTempDirs, tempDir } from './helpers.js';

const digitsBytes = gunzipSync(await readFile(join(DATA_DIR, 'digits.csv.gz')));
const irisBytes = await readFile(join(DATA_DIR, 'iris.csv'));

function counts(y: Int32Array, k: number): number[] {
  const out = new Array<number>(k).fill(0);
  for (const v of y) out[v]++;
  return out;
}

async function writeCsv(text: string, name = 'bad.csv'): Promise<string> {
  const path = join(await tempDir(), name);
  await writeFile(path, text);
  return path;
}

async function parseText(text: string, spec: Partial<CsvDataSpec>): Promise<ReturnType<typeof parseCsv>> {
  const path = await writeCsv(text);
  return parseCsv(await readFile(path), path, { format: 'csv', path, label: 'label', ...spec }, 'tiny');
}

/** Loads through the public entry point, so messages carry the resolved path. */
async function loadText(text: string, spec: Partial<CsvDataSpec>): Promise<{ path: string; load: () => Promise<unknown> }> {
  const path = await writeCsv(text);
  return { path, load: () => loadDataset('tiny', { format: 'csv', path, label: 'label', ...spec }, { baseDir: '/', seed: 1 }) };
}

test.after(removeTempDirs);

test('digits: 1797 headerless rows, 64 pixels 0..16, label last, 10 classes', async () => {
  const t = await parseCsv(digitsBytes, 'digits.csv', { format: 'csv', path: 'x', header: false, label: 64 }, 'digits');
  assert.is(t.count, 1797);
  assert.is(t.featureColumns.length, 64);
  assert.is(t.labelColumn, '64');
  assert.equal(t.classes, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
  assert.is(t.x.length, 1797 * 64);
  assert.ok(t.x.every((v) => v >= 0 && v <= 16 && Number.isInteger(v)));
  // sklearn's digits has 178..183 samples per class.
  for (const c of counts(t.y, 10)) assert.ok(c >= 170 && c <= 190, String(c));
  // The first row of the file is a 0.
  assert.is(t.y[0], 0);
  assert.equal(Array.from(t.x.subarray(0, 8)), [0, 0, 5, 13, 9, 1, 0, 0]);
});

test('iris: skipRows 1 skips the summary row; integer labels 0..2 map to the named classes', async () => {
  const spec: CsvDataSpec = { format: 'csv', path: 'x', header: false, skipRows: 1, label: 4, classes: ['setosa', 'versicolor', 'virginica'] };
  const t = await parseCsv(irisBytes, 'iris.csv', spec, 'iris');
  assert.is(t.count, 150);
  assert.is(t.featureColumns.length, 4);
  assert.equal(t.classes, ['setosa', 'versicolor', 'virginica']);
  assert.equal(counts(t.y, 3), [50, 50, 50]);
  assert.equal(Array.from(t.x.subarray(0, 4)), [5.1, 3.5, 1.4, 0.2].map(Math.fround));
  // Without classes the integers themselves are the class names, in numeric order.
  const plain = await parseCsv(irisBytes, 'iris.csv', { ...spec, classes: undefined }, 'iris');
  assert.equal(plain.classes, ['0', '1', '2']);
  assert.equal(plain.y, t.y);
});

test('iris: without skipRows the summary row is read as data and rejected with its row', async () => {
  // "150,4,setosa,versicolor,virginica" has five fields like the data rows, so it fails on its text.
  await expectInputError(
    () => parseCsv(irisBytes, 'iris.csv', { format: 'csv', path: 'x', header: false, label: 4 }, 'iris'),
    ['iris.csv: row 1, column "2"', 'found the text "setosa"'],
  );
});

test('wine and breast cancer: sklearn files load with their class counts', async () => {
  const wine = await parseCsv(await readFile(join(DATA_DIR, 'wine_data.csv')), 'wine', { format: 'csv', path: 'x', header: false, skipRows: 1, label: 13 }, 'wine');
  assert.is(wine.count, 178);
  assert.is(wine.featureColumns.length, 13);
  assert.equal(counts(wine.y, 3), [59, 71, 48]);
  const cancer = await parseCsv(await readFile(join(DATA_DIR, 'breast_cancer.csv')), 'bc', { format: 'csv', path: 'x', header: false, skipRows: 1, label: 30, classes: ['malignant', 'benign'] }, 'bc');
  assert.is(cancer.count, 569);
  assert.equal(counts(cancer.y, 2), [212, 357]);
});

test('header names, feature selection by name and index, numeric class order', async () => {
  const t = await parseText('a,b,c,label\n1,2,3,10\n4,5,6,9\n7,8,9,2\n', { features: ['c', 0] });
  assert.equal(t.featureColumns, ['c', 'a']);
  assert.equal(Array.from(t.x), [3, 1, 6, 4, 9, 7]);
  assert.equal(t.classes, ['2', '9', '10']);
  assert.equal(Array.from(t.y), [2, 1, 0]);
  const text = await parseText('x;label\n1;cat\n2;ant\n', { delimiter: ';' });
  assert.equal(text.classes, ['ant', 'cat']);
});

test('error: missing value where not allowed names file, row, column and the missing option', async () => {
  const { path, load } = await loadText('a,b,label\n1,2,x\n3,NA,y\n', {});
  await expectInputError(load, [path, 'row 3', 'column "b"', '"NA"', 'missing: drop', 'mean', 'zero']);
  const label = await loadText('a,b,label\n1,2,x\n3,4,\n', { missing: 'mean' });
  await expectInputError(label.load, [label.path, 'row 3', 'column "label"', 'missing: drop']);
});

test('error: text in a numeric column names file, row, column and the text', async () => {
  const { path, load } = await loadText('a,b,label\n1,2,x\n3,4,y\n5,abc,y\n', {});
  await expectInputError(load, [path, 'row 4', 'column "b"', '"abc"']);
  const hex = await loadText('a,label\n0x10,x\n', {});
  await expectInputError(hex.load, ['row 2', 'column "a"', '"0x10"']);
});

test('error: empty file, blank file, header without rows, skipRows past the end', async () => {
  for (const text of ['', '\n  \n']) {
    const { path, load } = await loadText(text, {});
    await expectInputError(load, [path, 'empty']);
  }
  const headerOnly = await loadText('a,b,label\n', {});
  await expectInputError(headerOnly.load, [headerOnly.path, 'row 1', 'no data rows']);
  const skipped = await loadText('a,b,label\n', { skipRows: 3 });
  await expectInputError(skipped.load, [skipped.path, 'skipRows']);
});

test('error: unknown column lists the columns and suggests the closest', async () => {
  const text = 'sepal_length,sepal_width,species\n1,2,a\n';
  const label = await loadText(text, { label: 'specie' });
  await expectInputError(label.load, [label.path, 'label column "specie" not found', 'Did you mean "species"?', '"sepal_length", "sepal_width", "species"']);
  const feature = await loadText(text, { label: 'species', features: ['sepal_lenght'] });
  await expectInputError(feature.load, ['feature column "sepal_lenght"', 'Did you mean "sepal_length"?']);
  const far = await loadText(text, { label: 'species', features: ['colour'] });
  const message = await expectInputError(far.load, ['feature column "colour" not found']);
  assert.not.ok(message.includes('Did you mean'), message);
  const index = await loadText('1,2,3\n', { header: false, label: 5 });
  await expectInputError(index.load, ['label column index 5 is out of range', '3 columns (0..2)']);
  const headerless = await loadText('1,2,3\n', { header: false, label: 'label' });
  await expectInputError(headerless.load, ['header: false', '0-based index']);
});

test('error: wrong field count names the row and the expected count', async () => {
  const { path, load } = await loadText('a,b,label\n1,2,x\n3,4,y\n5,y\n', {});
  await expectInputError(load, [path, 'row 4 has 2 fields, expected 3', 'header on row 1']);
  const extra = await loadText('a,b,label\n1,2,x\n\n3,4,5,y\n', {});
  await expectInputError(extra.load, ['row 4 has 4 fields, expected 3']);
});

test('error: label outside the given classes names its row', async () => {
  const { path, load } = await loadText('a,label\n1,cat\n2,dog\n3,cow\n', { classes: ['cat', 'dog'] });
  await expectInputError(load, [path, 'row 4', 'column "label"', '"cow"', 'classes']);
});

test('error: broken quoting is reported with its row', async () => {
  const { path, load } = await loadText('a,label\n1,x\n"2"z,y\n', {});
  await expectInputError(load, [path, 'row 3']);
});

test('missing: drop leaves rows out, zero fills 0, mean fills the column mean', async () => {
  const text = 'a,b,label\n1,2,x\n3,?,y\n,6,x\n7,8,y\n';
  const drop = await parseText(text, { missing: 'drop' });
  assert.is(drop.count, 2);
  assert.is(drop.dropped, 2);
  assert.equal(Array.from(drop.x), [1, 2, 7, 8]);
  const zero = await parseText(text, { missing: 'zero' });
  assert.equal(Array.from(zero.x), [1, 2, 3, 0, 0, 6, 7, 8]);
  const mean = await parseText(text, { missing: 'mean' });
  // a: mean of 1, 3, 7; b: mean of 2, 6, 8.
  assert.equal(Array.from(mean.x), [1, 2, 3, 16 / 3, 11 / 3, 6, 7, 8].map(Math.fround));
  // A missing value in a column that is not a feature does not matter.
  const unused = await parseText('a,b,label\n1,,x\n2,,y\n', { features: ['a'] });
  assert.is(unused.count, 2);
});

test.run();
