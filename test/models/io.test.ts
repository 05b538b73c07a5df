import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadLayersModelFrom, saveLayersModel } from '../../src/models/io.js';
import { InputError } from '../../src/errors.js';
import { removeTempDirs, serveFolder as serve, tempDir } from '../helpers.js';

function smallCnn(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.batchNormalization());
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 10, activation: 'softmax' }));
  return model;
}

test.after(removeTempDirs);

test("stock tf.loadLayersModel (tfjs's HTTP loader) reads what we wrote, sharded, with identical predictions", async () => {
  const model = smallCnn();
  const dir = await tempDir();
  const files = await saveLayersModel(model, dir, { shardBytes: 512 });
  assert.ok(files.shards.length > 1, 'expected several shards');
  const { url, server } = await serve(dir);
  try {
    const loaded = await tf.loadLayersModel(`${url}/model.json`);
    const x = tf.randomUniform([3, 8, 8, 1], 0, 1, 'float32', 1);
    const expected = await (model.predict(x) as tf.Tensor).data();
    const actual = await (loaded.predict(x) as tf.Tensor).data();
    assert.equal(Array.from(actual), Array.from(expected));
  } finally {
    server.close();
  }
});

test('our loader refuses a missing shard and a manifest that does not match the shard sizes', async () => {
  const dir = await tempDir();
  const files = await saveLayersModel(smallCnn(), dir, { shardBytes: 512 });
  const truncated = await readFile(join(dir, files.shards[1]));
  await writeFile(join(dir, files.shards[1]), truncated.subarray(0, 100));
  try {
    await loadLayersModelFrom(join(dir, 'model.json'));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /describes \d+ bytes but the shards hold \d+/);
  }
  await rm(join(dir, files.shards[0]));
  try {
    await loadLayersModelFrom(join(dir, 'model.json'));
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, `weight shard "${files.shards[0]}" is missing`);
  }
});

test('a weight spec with an absurd shape is refused before anything is allocated', async () => {
  const dir = await tempDir();
  await saveLayersModel(smallCnn(), dir);
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
  json.weightsManifest[0].weights[0].shape = [1e9, 1e9, 1e9];
  await writeFile(join(dir, 'model.json'), JSON.stringify(json));
  try {
    await loadLayersModelFrom(join(dir, 'model.json'));
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, 'invalid shape');
  }
});

test.run();
