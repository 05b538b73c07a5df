import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { sha256File } from '../../src/util/hash.js';
import { isGzip, readSourceFile, resolveDataPath } from '../../src/data/source.js';
import { DATA_DIR, expectInputError, removeTempDirs, tempDir } from './helpers.js';

test.after(removeTempDirs);

test('relative paths start at the base folder; absolute ones stay', () => {
  assert.is(resolveDataPath('data/iris.csv', '/p/q'), '/p/q/data/iris.csv');
  assert.is(resolveDataPath('../iris.csv', '/p/q'), '/p/iris.csv');
  assert.is(resolveDataPath('/abs/iris.csv', '/p/q'), '/abs/iris.csv');
});

test('gzip is decompressed by its magic bytes; the hash and size are of the bytes on disk', async () => {
  const path = join(DATA_DIR, 'digits.csv.gz');
  const gz = await readSourceFile(path, 'digits');
  assert.equal({ sha256: gz.sha256, bytes: gz.bytes }, await sha256File(path));
  assert.ok(gz.data.toString('utf8', 0, 16).startsWith('0,0,5,13,9,1,0,0'));
  const plain = await readSourceFile(join(DATA_DIR, 'iris.csv'), 'iris');
  assert.is(plain.data.length, plain.bytes);
  assert.ok(!isGzip(plain.data));
  assert.ok(isGzip(Uint8Array.of(0x1f, 0x8b, 8)));
});

test('missing files and folders are input errors naming the path', async () => {
  const dir = await tempDir();
  await expectInputError(() => readSourceFile(join(dir, 'none.csv'), 'the CSV file'), [join(dir, 'none.csv'), 'the CSV file not found']);
  await mkdir(join(dir, 'folder.csv'));
  await expectInputError(() => readSourceFile(join(dir, 'folder.csv'), 'the CSV file'), ['expected the CSV file (a file), found a folder']);
});

test.run();
