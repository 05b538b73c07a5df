import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { canonicalJson, sha256File, sha256 as sha256Hex } from '../../src/util/hash.js';
import { removeTempDirs, tempDir } from '../data/helpers.js';

test.after(removeTempDirs);

test('canonicalJson sorts keys at every level and drops undefined', () => {
  assert.is(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: undefined } }), '{"a":{"d":[2,{"y":2,"z":1}]},"b":1}');
  assert.is(canonicalJson({ x: 1, y: 2 }), canonicalJson({ y: 2, x: 1 }));
});

test('sha256File streams to the same digest as hashing the bytes', async () => {
  const path = join(await tempDir(), 'f.bin');
  const bytes = Buffer.from('tfjs-pipeline\n');
  await writeFile(path, bytes);
  assert.equal(await sha256File(path), { sha256: sha256Hex(bytes), bytes: bytes.length });
  assert.is(sha256Hex(''), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test.run();
