import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { publishServingVersion } from '../../src/artifacts/serving.js';
import { assertSafeName, type StoredVersion } from '../../src/artifacts/store.js';
import type { Manifest } from '../../src/artifacts/manifest.js';
import { removeTempDirs, tempDir } from '../helpers.js';

// TensorFlow Serving's layout: integer versions that only grow, one per distinct export, each
// appearing whole (renamed into place), never a name that escapes the base folder.

test.after(removeTempDirs);

async function storedExport(fingerprint: string): Promise<StoredVersion> {
  const dir = await tempDir();
  await mkdir(join(dir, 'onnx'));
  await writeFile(join(dir, 'onnx', 'model.onnx'), fingerprint);
  await writeFile(join(dir, 'manifest.json'), JSON.stringify({ fingerprint }));
  return { pipeline: 'p', stage: 'release', version: 1, dir, manifest: { fingerprint } as Manifest };
}

test('each new export gets the next integer; the same export again is not copied', async () => {
  const base = await tempDir();
  const a = await storedExport('aaa');
  const b = await storedExport('bbb');
  assert.equal(await publishServingVersion(base, 'm', a), { dir: join(base, 'm', '1'), version: 1, created: true });
  assert.equal(await publishServingVersion(base, 'm', b), { dir: join(base, 'm', '2'), version: 2, created: true });
  assert.equal(await publishServingVersion(base, 'm', a), { dir: join(base, 'm', '1'), version: 1, created: false });
  assert.is(await readFile(join(base, 'm', '2', 'onnx', 'model.onnx'), 'utf8'), 'bbb');
  assert.equal((await readdir(join(base, 'm'))).sort(), ['1', '2'], 'no temporary folder is left behind');
});

test('concurrent publishes of different exports get different versions', async () => {
  const base = await tempDir();
  const exports = await Promise.all(['x1', 'x2', 'x3', 'x4'].map(storedExport));
  const served = await Promise.all(exports.map((e) => publishServingVersion(base, 'm', e)));
  assert.equal(served.map((s) => s.version).sort(), [1, 2, 3, 4]);
  for (const [i, s] of served.entries()) assert.is(await readFile(join(s.dir, 'onnx', 'model.onnx'), 'utf8'), `x${i + 1}`);
});

test('model names that would leave the base folder, and the reserved pipeline name, are refused', async () => {
  const base = await tempDir();
  const a = await storedExport('aaa');
  for (const name of ['../up', '/abs', '.hidden', 'a/b']) {
    await publishServingVersion(base, name, a).then(
      () => assert.unreachable(`${name} was accepted`),
      (e: Error) => assert.match(e.message, `model name "${name}" cannot be used as a folder name`),
    );
  }
  assert.throws(() => assertSafeName('pipeline', 'serving'), /pipeline name "serving" is reserved/);
});

test.run();
