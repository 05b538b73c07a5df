import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadDataset } from '../../src/data/load.js';
import { DivergenceError } from '../../src/errors.js';
import type { LoadedDataset } from '../../src/data/types.js';
import { parseLossSpec } from '../../src/models/losses.js';
import { fit, type FitOptions } from '../../src/train/loop.js';
import { evaluateClassifier } from '../../src/train/metrics.js';
import { silentObserver } from '../../src/train/progress.js';
import { ROOT } from '../helpers.js';

const iris = await loadDataset(
  'iris',
  { format: 'csv', path: 'data/iris.csv', header: false, skipRows: 1, label: 4, normalize: 'standard', split: { validation: 0.2, test: 0.2 } },
  { baseDir: ROOT, seed: 1 },
);

function net(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [4], units: 16, activation: 'relu' }));
  model.add(tf.layers.dense({ units: 3 }));
  return model;
}

function options(model: tf.LayersModel, data: LoadedDataset, overrides: Partial<FitOptions>): FitOptions {
  return {
    model, train: data.train, validation: data.validation, featureShape: data.featureShape, numClasses: 3,
    epochs: 10, batchSize: 16, loss: parseLossSpec(undefined),
    outputIsProbabilities: false, monitor: 'val_loss', minDelta: 0, restoreBestWeights: true, shuffle: true,
    seed: 1, purpose: 'test', observer: silentObserver, ...overrides,
    // Built only when not given: each Adam holds tensors of its own, which would blur the leak check.
    optimizer: overrides.optimizer ?? tf.train.adam(0.01),
  };
}

test('tensor count stays flat across epochs (no leaks)', async () => {
  const model = net();
  const optimizer = tf.train.adam(0.01);
  await fit(options(model, iris, { epochs: 1, optimizer }));
  await fit(options(model, iris, { epochs: 2, optimizer }));
  const steady = tf.memory().numTensors;
  await fit(options(model, iris, { epochs: 6, optimizer }));
  assert.is(tf.memory().numTensors, steady, 'tensors grew with the number of epochs');
});

test('learns iris: validation accuracy rises well above chance', async () => {
  const result = await fit(options(net(), iris, { epochs: 30 }));
  assert.is(result.history.length, 30);
  assert.ok(result.history.at(-1)!.val_accuracy >= 0.8, `val accuracy ${result.history.at(-1)!.val_accuracy}`);
  assert.is(result.steps, 30 * Math.ceil(iris.train.count / 16));
});

test('early stopping stops after `patience` epochs without improvement', async () => {
  // minDelta larger than any possible improvement: only epoch 1 counts as one.
  const result = await fit(options(net(), iris, { epochs: 10, patience: 2, minDelta: 100 }));
  assert.is(result.history.length, 3);
  assert.ok(result.stoppedEarly);
  assert.is(result.bestEpoch, 1);
});

test('the best epoch is restored: the model ends with that epoch’s validation loss', async () => {
  const model = net();
  // A learning rate this high makes validation loss jump around, so the last epoch is rarely the best.
  const result = await fit(options(model, iris, { epochs: 8, optimizer: tf.train.sgd(3) }));
  const best = result.history[result.bestEpoch - 1];
  const after = await evaluateClassifier(model, iris.validation, [4], iris.classes, parseLossSpec(undefined), false);
  assert.ok(Math.abs(after.loss - best.val_loss) < 1e-5, `after ${after.loss} vs best ${best.val_loss}`);
  assert.ok(result.history.every((h) => h.val_loss >= best.val_loss));
});

test('a diverging loss stops training in the batch it went wrong, naming the epoch, the batch and the last good loss', async () => {
  const batches = Math.ceil(iris.train.count / 16);
  try {
    await fit(options(net(), iris, { epochs: 5, optimizer: tf.train.sgd(1e12) }));
    assert.unreachable('diverged run finished');
  } catch (err) {
    assert.instance(err, DivergenceError);
    const found = new RegExp(
      `^training diverged in epoch 1, batch (\\d+) of ${batches}: the loss is (NaN|Infinity) ` +
        '\\(last finite loss [\\d.e+]+ at batch (\\d+)\\); lower the learning rate',
    ).exec((err as Error).message);
    assert.ok(found, (err as Error).message);
    // The first step starts from sane weights, so its loss is finite; the one named is the first that is not.
    assert.ok(Number(found[1]) >= 2);
    assert.is(Number(found[3]), Number(found[1]) - 1);
  }
});

test('the same batch is named whether or not a progress bar reads the loss every batch', async () => {
  const messages: string[] = [];
  const start = net().getWeights();
  for (const wants of [false, true]) {
    const observer = { ...silentObserver, wantsBatchUpdate: () => wants };
    const model = net();
    model.setWeights(start);
    const error = await fit(options(model, iris, { epochs: 5, optimizer: tf.train.sgd(1e12), observer, seed: 4 })).catch((e: Error) => e);
    messages.push((error as Error).message);
  }
  assert.is(messages[0], messages[1]);
  assert.match(messages[0], /batch \d+ of/);
});

test('a validation loss that is not finite stops training, though every training loss was finite', async () => {
  // A validation row with an extreme feature: the model's output for it overflows.
  const x = Float32Array.from(iris.validation.x);
  x.fill(3e38, 0, 4);
  const data = { ...iris, validation: { ...iris.validation, x } };
  const error = await fit(options(net(), data, { epochs: 3 })).catch((e: Error) => e);
  assert.instance(error, DivergenceError);
  assert.match((error as Error).message, /^training diverged in epoch \d+: the validation loss is (NaN|Infinity) after it, though the training loss was \d+\.\d{4}/);
  assert.match((error as Error).message, 'check the data for extreme values');
});

test('batch updates carry the running loss and accuracy, which end at the epoch figures', async () => {
  const updates: [number, number, number, number][] = [];
  const observer = { ...silentObserver, wantsBatchUpdate: () => true, batchEnd: (...args: [number, number, number, number]) => updates.push(args) };
  const result = await fit(options(net(), iris, { epochs: 1, observer }));
  const batches = Math.ceil(iris.train.count / 16);
  assert.equal(updates.map((u) => u[0]), Array.from({ length: batches }, (_, i) => i + 1));
  const [, total, loss, accuracy] = updates.at(-1)!;
  assert.is(total, batches);
  assert.ok(Math.abs(loss - result.history[0].loss) < 1e-6, `${loss} vs ${result.history[0].loss}`);
  assert.ok(Math.abs(accuracy - result.history[0].accuracy) < 1e-9, `${accuracy} vs ${result.history[0].accuracy}`);
});

test.run();
