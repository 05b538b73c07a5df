import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { MAX_ROW_BYTES } from '../../src/data/csv.js';
import { hashDataSource, loadDataset } from '../../src/data/load.js';
import { readSourceFile } from '../../src/data/source.js';
import type { CsvDataSpec } from '../../src/data/types.js';
import { expectInputError, removeTempDirs, tempDir } from './helpers.js';

// Data files that are not what they claim: too long, wrongly encoded, binary, ragged, compressed
// into a bomb, or not files at all. Each is one InputError naming the file and the line.

test.after(removeTempDirs);

async function csvFile(content: string | Buffer): Promise<string> {
  const path = join(await tempDir(), 'hostile.csv');
  await writeFile(path, content);
  return path;
}

function load(path: string, spec: Partial<CsvDataSpec> = {}) {
  return () => loadDataset('d', { format: 'csv', path, label: 'label', ...spec } as CsvDataSpec, { baseDir: '/', seed: 1 });
}

const HEADER = 'a,b,label\n';
const rows = (n: number) => Array.from({ length: n }, (_, i) => `${i},${i * 2},${i % 2 ? 'x' : 'y'}`).join('\n');

test('an enormous line is refused by length before the parser holds it; the message stays short', async () => {
  const path = await csvFile(`${HEADER}1,2,x\n${'9'.repeat(MAX_ROW_BYTES + 10)},2,y\n`);
  const message = await expectInputError(load(path), [path, 'row 3 is over 4,194,304 bytes long']);
  assert.ok(message.length < 400, `message of ${message.length} characters`);
});

test('an unclosed quote that swallows the file stops at max_record_size, naming the row', async () => {
  const path = await csvFile(`${HEADER}1,2,x\n"3,4,y\n${'5,6,x\n'.repeat(800_000)}`);
  await expectInputError(load(path), [path, /row \d+: a record runs past 4,194,304 characters: a quote opened/]);
});

test('UTF-16 with a byte-order mark (spreadsheets\' "Unicode text") reads like UTF-8', async () => {
  const text = `${HEADER}${rows(10)}\n`;
  for (const bytes of [
    Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]),
    Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, 'utf16le').swap16()]),
  ]) {
    const data = await load(await csvFile(bytes))();
    assert.is(data.train.count + data.validation.count + data.test.count, 10);
    assert.equal(data.classes, ['x', 'y']);
  }
});

test('invalid UTF-8 is refused at its row, even where it would have been a label', async () => {
  // Two different Latin-1 labels would both decode to U+FFFD: one class where there are two.
  const path = await csvFile(Buffer.concat([Buffer.from(`${HEADER}1,2,caf`), Buffer.from([0xe9]), Buffer.from('\n3,4,x\n')]));
  await expectInputError(load(path), [`${path}: row 2, byte 8: not CSV text: byte 0xe9 is not valid UTF-8`, 'iconv']);
});

test('binary garbage, UTF-16 without a BOM and UTF-32 are refused as not CSV text', async () => {
  const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256));
  await expectInputError(load(await csvFile(garbage)), ['not CSV text: found a NUL byte: this is a binary file']);
  await expectInputError(load(await csvFile(Buffer.from(`${HEADER}1,2,x\n`, 'utf16le'))), ['row 1, byte 2: not CSV text: found a NUL byte']);
  const utf32 = Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), Buffer.alloc(8)]);
  await expectInputError(load(await csvFile(utf32)), ['UTF-32']);
});

test('ragged rows and non-numeric cells name file, row and column', async () => {
  const ragged = await csvFile(`${HEADER}1,2,x\n3,4\n`);
  await expectInputError(load(ragged), [`${ragged}: row 3 has 2 fields, expected 3`]);
  const text = await csvFile(`${HEADER}1,2,x\n3,four,y\n`);
  await expectInputError(load(text), [`${text}: row 3, column "b": expected a number, found the text "four"`]);
  const huge = await csvFile(`${HEADER}1,2,x\n3,${'7'.repeat(100_000)},y\n`);
  const message = await expectInputError(load(huge), [`${huge}: row 3, column "b": expected a number, found "7777`, 'beyond the float32 range']);
  assert.ok(message.length < 400, `message of ${message.length} characters`);
});

test('a gzip bomb is stopped as it inflates, not after', async () => {
  const path = await csvFile(gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x31)));
  await expectInputError(() => readSourceFile(path, 'the CSV file', { maxBytes: 1024 * 1024 }), [
    path,
    'decompresses to more than 1,048,576 bytes',
    'gzip bomb',
  ]);
});

test('a device or named pipe as the data path is refused before it is hashed or read', async () => {
  const spec = { format: 'csv', path: '/dev/zero', label: 0 } as CsvDataSpec;
  await expectInputError(() => hashDataSource('d', spec, { baseDir: '/', seed: 1 }), ['/dev/zero: expected a source file of data set "d", found a device']);
  await expectInputError(() => loadDataset('d', spec, { baseDir: '/', seed: 1 }), ['/dev/zero: expected the CSV file of data set "d", found a device']);
});

test.run();
