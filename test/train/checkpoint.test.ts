import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { loadDataset } from '../../src/data/load.js';
import { parseLossSpec } from '../../src/models/losses.js';
import { createOptimizer, type OptimizerSpec } from '../../src/models/optimizers.js';
import { decodeLoopState, encodeLoopState, renameOptimizerWeights, type CheckpointSlot } from '../../src/train/checkpoint.js';
import { fit, type FitOptions, type FitResult } from '../../src/train/loop.js';
import { silentObserver } from '../../src/train/progress.js';
import { sha256 } from '../../src/util/hash.js';
import { ROOT, removeTempDirs, tempDir } from '../helpers.js';

// A fit stopped at an epoch boundary or in the middle of an epoch, then resumed by a new fit (new
// model object, new optimizer, as in a new process) from the checkpoint in a real store, must end
// with exactly the weights of a fit that was never stopped: batch norm's moving statistics,
// dropout, shuffling, every optimizer's state and the best-epoch bookkeeping included.

test.after(removeTempDirs);

const digits = await loadDataset(
  'digits',
  { format: 'csv', path: 'data/digits.csv.gz', header: false, label: 64, normalize: { scale: 16 }, split: { validation: 0.1, test: 0.2 } },
  { baseDir: ROOT, seed: 2 },
);
const train = { ...digits.train, count: 320, x: digits.train.x.subarray(0, 320 * 64), y: digits.train.y.subarray(0, 320) };
const data = { ...digits, train };

let initial: tf.Tensor[] | undefined;
/** The same architecture and starting weights every time, as a rebuilt seeded model would have. */
function net(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [64], units: 24 }));
  model.add(tf.layers.batchNormalization());
  model.add(tf.layers.activation({ activation: 'relu' }));
  model.add(tf.layers.dropout({ rate: 0.3 }));
  model.add(tf.layers.dense({ units: 10 }));
  initial ??= model.getWeights().map((w) => tf.keep(w.clone()));
  model.setWeights(initial);
  return model;
}

async function slotIn(dir: string): Promise<CheckpointSlot & { rejected: string[] }> {
  const area = new LocalArtifactStore(dir).checkpoints('p', 's', 'a'.repeat(64));
  const rejected: string[] = [];
  return {
    where: area.path('training'),
    load: () => area.read('training'),
    save: (c) => area.write('training', c),
    reject: async (why) => void rejected.push(why),
    rejected,
  };
}

function options(model: tf.LayersModel, optimizer: OptimizerSpec, overrides: Partial<FitOptions> = {}): FitOptions {
  return {
    model, train: data.train, validation: data.validation, featureShape: [64], numClasses: 10,
    epochs: 5, batchSize: 32, optimizer: createOptimizer(optimizer), loss: parseLossSpec(undefined),
    outputIsProbabilities: false, monitor: 'val_loss', patience: 2, minDelta: 0, restoreBestWeights: true, shuffle: true,
    seed: 9, purpose: 'resume-test', observer: silentObserver, ...overrides,
  };
}

async function weightsHash(model: tf.LayersModel): Promise<string> {
  const parts = await Promise.all(model.getWeights().map(async (w) => new Uint8Array((await w.data()).buffer)));
  return sha256(Buffer.concat(parts));
}

/** Trains to the end, stopping once after `stopAfterChecks` calls of shouldStop and resuming. */
async function interruptedRun(optimizer: OptimizerSpec, stopAfterChecks: number): Promise<{ hash: string; result: FitResult; resumedFrom?: number }> {
  const slot = await slotIn(await tempDir());
  let checks = 0;
  const first = net();
  await fit(options(first, optimizer, { checkpoint: slot, shouldStop: () => ++checks > stopAfterChecks }));
  first.dispose();
  const second = net();
  const result = await fit(options(second, optimizer, { checkpoint: slot }));
  assert.equal(slot.rejected, []);
  const hash = await weightsHash(second);
  second.dispose();
  return { hash, result, resumedFrom: result.resumedFrom };
}

const batches = Math.ceil(320 / 32);
const OPTIMIZERS: OptimizerSpec[] = [
  { adam: { learningRate: 0.01 } },
  { sgd: { learningRate: 0.05, momentum: 0.9 } },
  { rmsprop: { learningRate: 0.003 } },
  'adagrad',
  'adadelta',
];

for (const optimizer of OPTIMIZERS) {
  test(`${JSON.stringify(optimizer)}: stopped mid-epoch or between epochs, then resumed: the weights of an uninterrupted fit`, async () => {
    const model = net();
    const straight = await fit(options(model, optimizer));
    const expected = await weightsHash(model);
    model.dispose();
    // shouldStop is asked after every batch and after every epoch: batches + 1 checks an epoch.
    for (const stopAfter of [batches + 1 + Math.floor(batches / 2), 2 * (batches + 1)]) {
      const { hash, result, resumedFrom } = await interruptedRun(optimizer, stopAfter);
      assert.is(resumedFrom, Math.floor(stopAfter / (batches + 1)) || 1, 'resumed from the last whole epoch');
      assert.is(hash, expected, `stopped after ${stopAfter} checks`);
      assert.equal(
        result.history.map((h) => [h.loss, h.val_loss]),
        straight.history.map((h) => [h.loss, h.val_loss]),
      );
      assert.equal([result.bestEpoch, result.stoppedEarly, result.steps], [straight.bestEpoch, straight.stoppedEarly, straight.steps]);
    }
  });
}

test('a fit that had finished (or stopped early) resumes to its result without training', async () => {
  const slot = await slotIn(await tempDir());
  const model = net();
  const done = await fit(options(model, 'adam', { checkpoint: slot, patience: 1, minDelta: 10 }));
  assert.ok(done.stoppedEarly);
  const expected = await weightsHash(model);
  const again = net();
  let epochs = 0;
  const resumed = await fit(options(again, 'adam', { checkpoint: slot, patience: 1, minDelta: 10, observer: { ...silentObserver, epochStart: () => void epochs++ } }));
  assert.is(epochs, 0);
  assert.is(await weightsHash(again), expected);
  assert.equal([resumed.bestEpoch, resumed.stoppedEarly, resumed.history.length], [done.bestEpoch, true, done.history.length]);
});

test('saving and resuming leak no tensors', async () => {
  const slot = await slotIn(await tempDir());
  const model = net();
  const optimizer = createOptimizer('adam');
  const run = (epochs: number, stopAfter = Infinity) => {
    let checks = 0;
    return fit({ ...options(model, 'adam', { epochs, checkpoint: slot, shouldStop: () => ++checks > stopAfter }), optimizer });
  };
  await run(2, batches + 3);
  await run(2);
  const steady = tf.memory().numTensors;
  await run(4, 2 * (batches + 1) + 2);
  await run(4);
  assert.is(tf.memory().numTensors, steady, 'tensors grew with checkpoints saved and resumed');
  model.dispose();
});

test('a checkpoint of another model is rejected, saying why, and training starts over', async () => {
  const slot = await slotIn(await tempDir());
  const other = tf.sequential({ layers: [tf.layers.dense({ inputShape: [64], units: 10 })] });
  await fit(options(other, 'adam', { checkpoint: slot, epochs: 1 }));
  const model = net();
  let info = '';
  const result = await fit(options(model, 'adam', { checkpoint: slot, epochs: 1, observer: { ...silentObserver, info: (m) => (info += m) } }));
  assert.is(result.resumedFrom, undefined);
  assert.match(slot.rejected[0], /^its weights \(\[64,10\] \[10\]\) do not fit the model \(\[64,24\] \[24\] /);
  assert.not.match(info, 'resuming');
});

test('an optimizer tfjs cannot save (adamax) trains without checkpoints and says so', async () => {
  const slot = await slotIn(await tempDir());
  let info = '';
  await fit(options(net(), 'adamax', { checkpoint: slot, epochs: 2, observer: { ...silentObserver, info: (m) => (info += m) } }));
  assert.match(info, 'no checkpoints: tfjs cannot save the state of Adamax');
  assert.is(await slot.load(), undefined);
});

test('encode and decode: every tensor and number back as saved, NaN metrics included', async () => {
  const weights = [tf.tensor2d([[1, -2.5], [3e-8, 4]]), tf.tensor1d([Math.PI])];
  const iter = tf.scalar(7, 'int32');
  const history = [{ epoch: 1, loss: 0.5, accuracy: 0.9, val_loss: NaN, val_accuracy: NaN, seconds: 1.5 }];
  const checkpoint = await encodeLoopState({
    epoch: 1, epochs: 3, steps: 13, history, best: { epoch: 1, value: 0.5, weights: [weights[1]] }, sinceImprovement: 0, stoppedEarly: false,
    weights, optimizer: [{ name: 'iter', tensor: iter }, { name: 'dense_Dense1/kernel/m', tensor: weights[0] }],
    variables: ['dense_Dense1/kernel'], callbacks: { tensors: [weights[1]], json: { masked: ['x'] } },
  });
  // The store keeps the meta as JSON.
  const back = decodeLoopState({ ...checkpoint, meta: JSON.parse(JSON.stringify(checkpoint.meta)) });
  assert.equal(await Promise.all(back.weights.map((w) => w.array())), [[[1, -2.5], [Math.fround(3e-8), 4]], [Math.fround(Math.PI)]]);
  assert.is(back.optimizer[0].tensor.dtype, 'int32');
  assert.is((await back.optimizer[0].tensor.data())[0], 7);
  assert.ok(Number.isNaN(back.history[0].val_loss), 'NaN survived JSON');
  assert.equal([back.epoch, back.epochs, back.steps, back.best?.epoch, back.callbacks?.json], [1, 3, 13, 1, { masked: ['x'] }]);
  const renamed = renameOptimizerWeights(back.optimizer, back.variables, ['dense_Dense7/kernel']);
  assert.equal(renamed.map((w) => w.name), ['iter', 'dense_Dense7/kernel/m']);
});

test.run();
