import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

test.after(removeTempDirs);

test('Fashion-MNIST from its IDX files: a seeded subset trains above its floor, lineage names the files', async () => {
  const store = await tempDir();
  const run = await cli(['run', fixture('fashion-subset.yaml'), '--store', store]);
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stdout, '2700 train / 300 validation / 1000 test samples');
  const metrics = JSON.parse(await readFile(join(store, 'fashion-subset', 'mlp', 'v1', 'metrics.json'), 'utf8'));
  assert.ok(metrics.test.accuracy >= 0.75, `test accuracy ${metrics.test.accuracy} < 0.75`);
  assert.is(metrics.test.confusionMatrix.length, 10);
  const show = await cli(['show', 'fashion-subset/mlp@v1', '--store', store]);
  assert.match(show.stdout, 'train-images-idx3-ubyte.gz');
  const spec = JSON.parse(await readFile(join(store, 'fashion-subset', 'mlp', 'v1', 'input-spec.json'), 'utf8'));
  assert.equal(spec.featureShape, [28, 28, 1]);
  assert.equal(spec.preprocessing, { kind: 'scale', scale: 255 });
});

test.run();
