import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { prunedCount } from '../../src/compress/pruning.js';
import { runPipeline } from '../../src/engine/run.js';
import { InputError } from '../../src/errors.js';
import { readModelArtifacts } from '../../src/models/io.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { digitsWorkspace } from '../compress/digits-workspace.js';
import { RecordingReporter, removeTempDirs } from '../helpers.js';

const quiet = new TerminalReporter({ quiet: true });
test.after(removeTempDirs);

const ws = await digitsWorkspace(['mlp', 'pruned']);
await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
const version = await ws.store.openVersion('digits-compress', 'pruned');
const metrics = JSON.parse(await readFile(join(version.dir, 'metrics.json'), 'utf8'));

test('sparsity per layer is reached exactly, in the stored files; the excluded layer stays dense', async () => {
  const rows = metrics.sparsity.layers as { layer: string; weight: string; elements: number; zeros: number; target: number; excluded: boolean }[];
  assert.equal(rows.map((r) => [r.elements, r.target, r.excluded]), [[8192, 0.8, false], [1280, 0, true]]);
  assert.is(rows[0].zeros, prunedCount(0.8, 8192));
  // Count again in the stored model, loaded by tfjs itself.
  const model = await tf.loadLayersModel(tf.io.fromMemory(await readModelArtifacts(join(version.dir, 'model.json'))));
  const zeros = (t: tf.Tensor) => Array.from(t.dataSync()).filter((v) => v === 0).length;
  const [hidden, hiddenBias, out] = model.getWeights();
  assert.is(zeros(hidden), prunedCount(0.8, 8192));
  assert.ok(zeros(out) < 10, 'the excluded output layer was pruned');
  assert.ok(zeros(hiddenBias) < 64, 'biases are not pruned');
  assert.ok(Math.abs(metrics.sparsity.prunedLayers - 0.8) < 1e-4);
});

test('the schedule ran in steps derived from epochs, with the mask updates it promised', () => {
  const s = metrics.schedule;
  assert.is(s.endStep, 2 * s.stepsPerEpoch);
  assert.is(s.frequency, Math.round(0.5 * s.stepsPerEpoch));
  assert.is(s.updates[0].step, 0);
  assert.is(s.updates.at(-1).step, s.endStep);
  assert.is(s.updates.at(-1).sparsity, 0.8);
  assert.is(s.stepsRun, 4 * s.stepsPerEpoch);
});

test('test accuracy before and after, sizes before and after (raw equal, gzip smaller), headline', () => {
  const { before, after } = metrics.test;
  assert.ok(before.accuracy > 0.9, `trained model at ${before.accuracy}`);
  assert.ok(after.accuracy >= before.accuracy - 0.03, `pruning cost ${before.accuracy} -> ${after.accuracy}`);
  assert.is(metrics.size.before.raw, metrics.size.after.raw);
  assert.ok(metrics.size.after.gzip < 0.6 * metrics.size.before.gzip, JSON.stringify(metrics.size));
  assert.equal(Object.keys(version.manifest.metrics).sort(), ['gzip_bytes', 'sparsity', 'test_accuracy', 'test_accuracy_before']);
});

test('the output is a plain layers model with the same weights as its source, plus input-spec.json', async () => {
  const source = await ws.store.openVersion('digits-compress', 'mlp');
  const names = async (dir: string) => JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')).weightsManifest[0].weights;
  assert.equal(await names(version.dir), await names(source.dir));
  assert.equal(
    JSON.parse(await readFile(join(version.dir, 'input-spec.json'), 'utf8')),
    JSON.parse(await readFile(join(source.dir, 'input-spec.json'), 'utf8')),
  );
});

test('a selector that matches no layer, and a schedule past the last epoch, are input errors naming the key', async () => {
  const bad = await digitsWorkspace(['mlp', 'pruned'], { pruned: { exclude: ['first:conv2d'] } });
  try {
    await runPipeline(await loadPipeline(bad.file, ['mlp.epochs=1']), { store: bad.store, reporter: quiet });
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, 'stages.pruned.exclude: "first:conv2d" selects no prunable layer');
  }
  const late = await digitsWorkspace(['mlp', 'pruned'], { pruned: { endEpoch: 9 } });
  try {
    await loadPipeline(late.file);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, 'endEpoch 9 is after the last fine-tuning epoch (epochs: 4)');
  }
});

test('interrupted in fine-tuning epoch 3 (masks final): the rerun resumes with its masks and schedule to the same model', async () => {
  const shard = (v: { manifest: { files: Record<string, { sha256: string }> } }) => v.manifest.files['group1-shard1of1.bin'].sha256;
  const expected = shard(version);
  // The stage runs again with the same config: its version gone, mlp still reused.
  await rm(version.dir, { recursive: true });
  const stopping = new RecordingReporter({ stage: 'pruned', epochs: 3 });
  const error = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: stopping, stopRequested: () => stopping.stop }).catch((e) => e);
  assert.match((error as Error).message, 'interrupted during stage "pruned" after epoch 3/4 (fine-tuning)');
  const record = await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
  assert.equal(record.stages.map((s) => [s.stage, s.status, s.resumedFromEpoch]), [['mlp', 'reused', undefined], ['pruned', 'ran', { 'fine-tuning': 3 }]]);
  const again = await ws.store.openVersion('digits-compress', 'pruned');
  assert.is(shard(again), expected);
  const m = JSON.parse(await readFile(join(again.dir, 'metrics.json'), 'utf8'));
  assert.equal(m.schedule.updates, metrics.schedule.updates);
  assert.equal([m.keptEpoch, m.test.after.accuracy], [metrics.keptEpoch, metrics.test.after.accuracy]);
});

test.run();
