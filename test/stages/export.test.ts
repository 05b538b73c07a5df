import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadDataset } from '../../src/data/load.js';
import { decodeSavedModel } from '../../src/export/saved-model.js';
import { loadLayersModelFrom } from '../../src/models/io.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { sha256File } from '../../src/util/hash.js';
import { cli, fixture, removeTempDirs, ROOT, serveFolder, tempDir } from '../helpers.js';

// The export stage on real data, each format loaded by the runtime a serving team would use (plain
// @tensorflow/tfjs loaders over HTTP, onnxruntime-node), none of our code on the loading path.
// Every exported model must predict what the stage it came from predicts on the test split.

test.after(removeTempDirs);

const FLOAT_TOLERANCE = 1e-4;
let store = '';

test.before(async () => {
  await tf.setBackend('cpu');
  store = await tempDir();
  const run = await cli(['run', fixture('export.yaml'), '--store', store]);
  assert.is(run.code, 0, run.stderr + run.stdout);
});

interface Case {
  exportStage: string;
  source: string;
  data: string;
  quantized: boolean;
  /** TF Serving folder it was published to: <store>/serving/<model>/<N>. */
  served: string;
}

const CASES: Case[] = [
  { exportStage: 'digits-export', source: 'digits-mlp', data: 'digits', quantized: false, served: 'export-check/1' },
  { exportStage: 'digits-uint8-export', source: 'digits-uint8', data: 'digits', quantized: true, served: 'export-check/2' },
  { exportStage: 'fashion-export', source: 'fashion-cnn', data: 'fashion', quantized: false, served: 'export-check/3' },
  { exportStage: 'fashion-uint8-export', source: 'fashion-uint8', data: 'fashion', quantized: true, served: 'fashion/1' },
];

function compare(label: string, got: Float32Array, expected: Float32Array, classes: number, quantized: boolean) {
  assert.is(got.length, expected.length, `${label}: output size`);
  let maxDiff = 0;
  let argmaxDiffers = 0;
  for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i] - expected[i]));
  for (let r = 0; r < got.length / classes; r++) {
    const row = (a: Float32Array) => a.subarray(r * classes, (r + 1) * classes);
    const argmax = (a: Float32Array) => a.indexOf(Math.max(...a));
    if (argmax(row(got)) !== argmax(row(expected))) argmaxDiffers++;
  }
  assert.is(argmaxDiffers, 0, `${label}: ${argmaxDiffers} test samples change class`);
  // Quantized weights are exported as stored (never re-quantized), so they meet the float bound too.
  assert.ok(maxDiff <= FLOAT_TOLERANCE, `${label}: max abs difference ${maxDiff} > ${FLOAT_TOLERANCE}${quantized ? ' (quantized)' : ''}`);
}

for (const c of CASES) {
  test(`${c.exportStage}: tfjs-layers, tfjs-graph and ONNX predict what "${c.source}" predicts on the test split`, async () => {
    const pipeline = await loadPipeline(fixture('export.yaml'));
    const dataset = await loadDataset(c.data, pipeline.data[c.data], { baseDir: pipeline.baseDir, seed: pipeline.seed });
    const x = tf.tensor(dataset.test.x, [dataset.test.count, ...dataset.featureShape]);
    const classes = dataset.classes.length;
    const source = await loadLayersModelFrom(join(store, 'export-check', c.source, 'v1', 'model.json'));
    const spec = JSON.parse(await readFile(join(store, 'export-check', c.source, 'v1', 'input-spec.json'), 'utf8'));
    // The export serves probabilities: a model trained on logits gets a softmax.
    const expected = tf.tidy(() => {
      const y = source.predict(x) as tf.Tensor;
      return spec.outputIsProbabilities ? y : tf.softmax(y);
    });
    const want = (await expected.data()) as Float32Array;
    const dir = join(store, 'serving', c.served);

    const { url, server } = await serveFolder(dir);
    try {
      const layers = await tf.loadLayersModel(`${url}/tfjs-layers/model.json`);
      compare(`${c.exportStage} tfjs-layers`, (await (layers.predict(x) as tf.Tensor).data()) as Float32Array, want, classes, c.quantized);
      const graph = await tf.loadGraphModel(`${url}/tfjs-graph/model.json`);
      assert.equal(Object.keys((graph.modelSignature as { inputs: object }).inputs), ['input']);
      compare(`${c.exportStage} tfjs-graph`, (await (graph.predict(x) as tf.Tensor).data()) as Float32Array, want, classes, c.quantized);
    } finally {
      server.close();
    }

    const session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'));
    assert.equal(session.inputNames, ['input']);
    assert.equal(session.outputNames, ['probabilities']);
    const out = await session.run({ input: new ort.Tensor('float32', dataset.test.x, [dataset.test.count, ...dataset.featureShape]) });
    compare(`${c.exportStage} onnx`, out.probabilities.data as Float32Array, want, classes, c.quantized);
    await session.release();
    tf.dispose([x, expected]);
    source.dispose();
  });

  test(`${c.exportStage}: the SavedModel holds the tfjs-graph GraphDef and a serving_default signature`, async () => {
    const dir = join(store, 'serving', c.served);
    const saved = decodeSavedModel(await readFile(join(dir, 'saved_model.pb')));
    const graphJson = JSON.parse(await readFile(join(dir, 'tfjs-graph', 'model.json'), 'utf8'));
    assert.is(saved.metaGraphs!.length, 1);
    const meta = saved.metaGraphs![0];
    assert.equal(meta.metaInfoDef!.tags, ['serve']);
    const signature = meta.signatureDef!.serving_default;
    assert.is(signature.methodName, 'tensorflow/serving/predict');
    assert.equal(Object.keys(signature.inputs!), ['input']);
    assert.equal(Object.keys(signature.outputs!), ['probabilities']);
    assert.equal(signature.inputs!.input, graphJson.signature.inputs.input);
    const stripped = structuredClone(meta.graphDef!) as { node: { attr?: Record<string, { tensor?: { tensorContent?: unknown } }> }[] };
    for (const node of stripped.node) delete node.attr?.value?.tensor?.tensorContent;
    assert.equal(stripped, graphJson.modelTopology);
    assert.ok((await stat(join(dir, 'variables'))).isDirectory(), 'variables/ exists');
  });
}

test('the serving folder is a copy of the stored version: every file matches the manifest, the card tells lineage and signature', async () => {
  const dir = join(store, 'serving', 'fashion', '1');
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  for (const [file, digest] of Object.entries(manifest.files) as [string, { sha256: string }][]) {
    assert.is((await sha256File(join(dir, file))).sha256, digest.sha256, file);
  }
  const shards = (await readdir(join(dir, 'tfjs-graph'))).filter((f) => f.endsWith('.bin'));
  assert.ok(shards.length >= 1);
  const card = JSON.parse(await readFile(join(dir, 'model-card.json'), 'utf8'));
  const source = JSON.parse(await readFile(join(store, 'export-check', 'fashion-uint8', 'v1', 'manifest.json'), 'utf8'));
  assert.is(card.modelName, 'fashion');
  assert.is(card.lineage.stage, 'fashion-uint8');
  assert.is(card.lineage.fingerprint, source.fingerprint);
  assert.is(card.lineage.inputs.stages['fashion-cnn'].version, 1);
  assert.equal(card.signature.inputs.input.shape, [-1, 28, 28, 1]);
  assert.equal(card.signature.outputs.probabilities.shape, [-1, 10]);
  assert.is(card.labels[9], 'Ankle boot');
  assert.equal({ kind: card.preprocessing.kind, scale: card.preprocessing.scale }, { kind: 'scale', scale: 255 });
  assert.ok(card.metrics.accuracy > 0.65, `test accuracy ${card.metrics.accuracy}`);
  assert.equal(Object.keys(card.formats).sort(), ['onnx', 'saved-model', 'tfjs-graph', 'tfjs-layers']);
});

test('a failing gate exports nothing, exits 1 and names the metric; passing again publishes the next serving version once', async () => {
  const quick = join(ROOT, 'pipelines', 'quickstart.yaml');
  const own = await tempDir();
  const failed = await cli(['run', quick, '--store', own, '--set', 'release.gate.accuracy=0.999']);
  assert.is(failed.code, 1, failed.stdout + failed.stderr);
  assert.match(failed.stderr, 'stages.release.gate: the model missed accuracy >= 0.999 (test accuracy is 0.9');
  assert.match(failed.stderr, 'nothing was exported');
  const versions = await readdir(join(own, 'quickstart', 'release')).catch(() => []);
  assert.equal(versions.filter((v) => v.startsWith('v')), []);
  await assert.not.ok(await stat(join(own, 'serving')).catch(() => false), 'no serving folder');

  const first = await cli(['run', quick, '--store', own]);
  assert.is(first.code, 0, first.stderr);
  assert.match(first.stdout, /serving version 1: .*serving\/digits\/1/);
  const again = await cli(['run', quick, '--store', own]);
  assert.match(again.stdout, 'serving version 1 is this export already');
  const changed = await cli(['run', quick, '--store', own, '--set', 'release.formats=[onnx]']);
  assert.is(changed.code, 0, changed.stderr);
  assert.match(changed.stdout, 'serving version 2');
  assert.equal((await readdir(join(own, 'serving', 'digits'))).sort(), ['1', '2']);
  assert.equal((await readdir(join(own, 'serving', 'digits', '2'))).sort(), ['manifest.json', 'metrics.json', 'model-card.json', 'onnx']);
});

test.run();
