import { copyFile, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { runPipeline } from '../../src/engine/run.js';
import { InputError } from '../../src/errors.js';
import { buildModel } from '../../src/models/build.js';
import { loadLayersModelFrom, saveLayersModel } from '../../src/models/io.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { ROOT, fixture, removeTempDirs, tempDir } from '../helpers.js';

// model.json files given as `model: {path}` that would make tfjs allocate absurd memory, or that
// are not what they claim. Each is refused by our reader before tfjs builds anything.

await tf.setBackend('cpu');
test.after(removeTempDirs);

/** A small CNN saved to a fresh folder; `edit` rewrites its model.json. */
async function savedModel(edit?: (json: any) => void): Promise<string> {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu' }));
  model.add(tf.layers.batchNormalization());
  model.add(tf.layers.depthwiseConv2d({ kernelSize: 3 }));
  model.add(tf.layers.maxPooling2d({}));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 10, activation: 'softmax' }));
  const dir = await tempDir();
  await saveLayersModel(model, dir);
  model.dispose();
  const path = join(dir, 'model.json');
  if (edit) {
    const json = JSON.parse(await readFile(path, 'utf8'));
    edit(json);
    await writeFile(path, JSON.stringify(json));
  }
  return path;
}

async function refused(path: string, pattern: string | RegExp): Promise<void> {
  const before = tf.memory().numBytes;
  try {
    (await loadLayersModelFrom(path)).dispose();
  } catch (err) {
    assert.instance(err, InputError, String(err));
    assert.ok((err as Error).message.startsWith(`${path}: `), (err as Error).message);
    assert.match((err as Error).message, pattern);
    assert.not.match((err as Error).message, 'tfjs could not build', 'tfjs got as far as building it');
    assert.is(tf.memory().numBytes, before, 'tensors were allocated');
    return;
  }
  assert.unreachable(`${path} loaded`);
}

const layers = (json: any) => json.modelTopology.config.layers;
const weight = (json: any, name: string) => json.weightsManifest[0].weights.find((w: any) => w.name.endsWith(name));

test('our own models still load, through the checks', async () => {
  const model = await loadLayersModelFrom(await savedModel());
  assert.is(model.countParams(), 266);
  model.dispose();
});

test('a topology declaring a Dense of 1e9 units is refused before tfjs allocates it', async () => {
  await refused(await savedModel((j) => (layers(j)[5].config.units = 1e9)), /declares 1\.70e\+10 parameters, over the limit of 100,000,000.*the largest weight is dense_Dense\d+\/kernel of shape \[16, 1000000000\]/);
  await refused(await savedModel((j) => (layers(j)[0].config.filters = 1e9)), 'over the limit of 100,000,000');
  await refused(await savedModel((j) => (layers(j)[0].config.batch_input_shape = [null, 30000, 30000, 1])), 'over the limit');
});

test('a topology that fits the budget but not the weights is refused, naming the layer', async () => {
  await refused(await savedModel((j) => (layers(j)[5].config.units = 1000)), /layer "dense_Dense\d+" needs dense_Dense\d+\/kernel of shape \[16, 1000\], but the weights manifest declares \[16, 10\]/);
  await refused(
    await savedModel((j) => j.weightsManifest[0].weights.push({ name: 'stray/kernel', shape: [2], dtype: 'float32' })),
    'the topology needs 266 weight values but the weights manifest declares 268',
  );
});

test('a manifest entry of shape [1e6, 1e6] is refused before any shard is read', async () => {
  await refused(await savedModel((j) => (weight(j, 'dense_Dense1/kernel') ?? j.weightsManifest[0].weights[6]).shape = [1e6, 1e6]), 'declares 1.00e+12 weight values, over the limit');
  await refused(await savedModel((j) => (j.weightsManifest[0].weights[0].shape = [1e9, 1e9, 1e9])), 'invalid shape');
});

test('missing shards, mismatched sizes, shards that are devices, and unsafe shard paths', async () => {
  const missing = await savedModel();
  await rm(join(missing, '..', 'group1-shard1of1.bin'));
  await refused(missing, 'weight shard "group1-shard1of1.bin" is missing beside model.json');
  const short = await savedModel();
  await writeFile(join(short, '..', 'group1-shard1of1.bin'), Buffer.alloc(100));
  await refused(short, 'the weights manifest describes 1064 bytes but the shards hold 100');
  const device = await savedModel((j) => (j.weightsManifest[0].paths = ['zero.bin']));
  await symlink('/dev/zero', join(device, '..', 'zero.bin'));
  await refused(device, 'weight shard "zero.bin" is a device, not a file');
  await refused(await savedModel((j) => (j.weightsManifest[0].paths = ['../../etc/passwd'])), 'must sit beside model.json');
});

test('float32 weights holding NaN or infinity are refused, naming the weight', async () => {
  const path = await savedModel();
  const shard = join(path, '..', 'group1-shard1of1.bin');
  const bytes = await readFile(shard);
  bytes.writeFloatLE(Number.NaN, 4 * 5);
  await writeFile(shard, bytes);
  await refused(path, /weight "conv2d_Conv2D\d+\/kernel" holds NaN at element 5/);
});

test('non-JSON, a JSON that is not a model, malformed manifests, unknown layers', async () => {
  const notJson = await savedModel();
  await writeFile(notJson, 'not json {');
  await refused(notJson, 'cannot read a tfjs model.json: Unexpected token');
  const array = await savedModel();
  await writeFile(array, '[1, 2]');
  await refused(array, 'not a tfjs model.json');
  await refused(await savedModel((j) => (j.weightsManifest = [{}])), 'weightsManifest[0] is not a {paths: [file names], weights: [entries]} group');
  await refused(await savedModel((j) => (j.weightsManifest[0].weights[2].shape = 'big')), 'weightsManifest[0].weights[2] is not a {name, shape, dtype} entry');
  await refused(await savedModel((j) => (layers(j)[3].class_name = 'Lambda')), 'layer 3 is a "Lambda", which this tool cannot check before building; supported: InputLayer, Dense');
  await refused(await savedModel((j) => delete layers(j)[0].config.batch_input_shape), 'declares no input shape');
  await refused('/dev/zero', 'cannot read a tfjs model.json: it is a device, not a file');
});

test('a layer list over the parameter budget is refused before tfjs adds a layer', async () => {
  const before = tf.memory().numBytes;
  const spec = { layers: [{ type: 'flatten' }, { type: 'dense', units: 65536 }, { type: 'dense', units: 65536 }, { type: 'dense', units: 10 }] };
  try {
    await buildModel(spec, { baseDir: '/', where: 'stages.big.model', inputShape: [28, 28, 1], numClasses: 10 });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /^stages\.big\.model: for inputs of shape \[28, 28, 1\] the layers have 4\.35e\+9 parameters, over the limit/);
    assert.match((err as Error).message, "the largest weight is stages.big.model.layers.2's kernel of shape [65536, 65536]");
  }
  assert.is(tf.memory().numBytes, before);
});

test('a train stage from a hostile model.json fails with exit 2 and publishes nothing', async () => {
  const dir = await tempDir();
  await copyFile(join(ROOT, 'data', 'iris.csv'), join(dir, 'iris.csv'));
  const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 3 })] });
  await saveLayersModel(model, dir);
  model.dispose();
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
  json.modelTopology.config.layers[0].config.units = 1e9;
  await writeFile(join(dir, 'model.json'), JSON.stringify(json));
  const yaml = (await readFile(fixture('iris.yaml'), 'utf8'))
    .replace('../../data/iris.csv', 'iris.csv')
    .replace(/    model:\n      layers:\n(        - .*\n)+/, '    model: {path: model.json}\n');
  await writeFile(join(dir, 'iris.yaml'), yaml);
  const store = new LocalArtifactStore(join(dir, 'artifacts'));
  try {
    await runPipeline(await loadPipeline(join(dir, 'iris.yaml')), { store, reporter: new TerminalReporter({ quiet: true }) });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.is((err as InputError).exitCode, 2);
    assert.match((err as Error).message, `${join(dir, 'model.json')}: the topology declares`);
  }
  assert.equal(await readdir(join(dir, 'artifacts', 'iris', 'net')), [], 'a version or temporary folder was left');
  const [run] = await store.listRuns('iris');
  assert.is(run.status, 'failed');
});

test.run();
