import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  isPruningStep,
  MagnitudePruner,
  magnitudeMask,
  magnitudeMaskTensor,
  prunableLayers,
  prunedCount,
  resolveLayerTargets,
  scheduledSparsity,
  type PruningSchedule,
} from '../../src/compress/pruning.js';
import { loadDataset } from '../../src/data/load.js';
import { InputError } from '../../src/errors.js';
import { parseLossSpec } from '../../src/models/losses.js';
import { fit } from '../../src/train/loop.js';
import { silentObserver } from '../../src/train/progress.js';
import { ROOT } from '../helpers.js';

const poly = (o: Partial<PruningSchedule> = {}): PruningSchedule => ({
  kind: 'polynomial', initialSparsity: 0, finalSparsity: 0.8, beginStep: 10, endStep: 50, frequency: 10, ...o,
});

test('polynomial schedule: the values of Zhu & Gupta eq. 1 at every pruning step', () => {
  for (const si of [0, 0.2]) {
    const s = poly({ initialSparsity: si });
    // s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3 with t0 = 10, n = 4, dt = 10, written out.
    const expected: Record<number, number> = {
      10: si,
      20: 0.8 + (si - 0.8) * 0.75 ** 3,
      30: 0.8 + (si - 0.8) * 0.5 ** 3,
      40: 0.8 + (si - 0.8) * 0.25 ** 3,
      50: 0.8,
    };
    for (const [t, value] of Object.entries(expected)) assert.ok(Math.abs(scheduledSparsity(s, Number(t)) - value) < 1e-12, `t=${t}`);
    assert.is(scheduledSparsity(s, 0), si, 'before t0: s_i');
    assert.is(scheduledSparsity(s, 500), 0.8, 'after t0 + n dt: s_f');
  }
  assert.ok(Math.abs(scheduledSparsity(poly(), 20) - 0.4625) < 1e-12, '0.8 * (1 - 0.75^3)');
  let last = -1;
  for (let t = 0; t <= 60; t++) {
    const v = scheduledSparsity(poly(), t);
    assert.ok(v >= last, `not monotonic at step ${t}`);
    last = v;
  }
});

test('pruning steps: every dt from t0, and the end step even when n * dt does not land on it', () => {
  const steps = Array.from({ length: 70 }, (_, t) => t).filter((t) => isPruningStep(poly(), t));
  assert.equal(steps, [10, 20, 30, 40, 50]);
  const odd = Array.from({ length: 70 }, (_, t) => t).filter((t) => isPruningStep(poly({ endStep: 45 }), t));
  assert.equal(odd, [10, 20, 30, 40, 45]);
  assert.is(scheduledSparsity(poly({ endStep: 45 }), 45), 0.8);
  // One-shot: begin = end.
  const once = poly({ beginStep: 5, endStep: 5 });
  assert.is(scheduledSparsity(once, 5), 0.8);
  assert.is(scheduledSparsity(once, 4), 0);
});

test('constant schedule: nothing before t0, the target from t0 on', () => {
  const s = poly({ kind: 'constant', finalSparsity: 0.6 });
  assert.is(scheduledSparsity(s, 9), 0);
  assert.is(scheduledSparsity(s, 10), 0.6);
  assert.is(scheduledSparsity(s, 31), 0.6);
});

test('magnitude mask: exactly round(s * n) zeros, all of the smallest magnitudes, ties by index', () => {
  const rng = (seed: number) => () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const next = rng(7);
  for (const n of [1, 7, 100, 1001]) {
    const values = Float32Array.from({ length: n }, next);
    for (const s of [0, 0.1, 0.5, 0.8, 0.93, 0.999]) {
      const mask = magnitudeMask(values, s);
      const zeros = mask.reduce((a, m) => a + (m === 0 ? 1 : 0), 0);
      assert.is(zeros, prunedCount(s, n), `n=${n} s=${s}`);
      let maxPruned = 0;
      let minKept = Infinity;
      mask.forEach((m, i) => (m ? (minKept = Math.min(minKept, Math.abs(values[i]))) : (maxPruned = Math.max(maxPruned, Math.abs(values[i])))));
      assert.ok(maxPruned <= minKept, `a pruned weight is larger than a kept one (n=${n} s=${s})`);
    }
  }
  assert.equal(Array.from(magnitudeMask(new Float32Array(6).fill(0.5), 0.5)), [0, 0, 0, 1, 1, 1]);
  assert.equal(Array.from(magnitudeMask([3, -1, 0, 2, -0.5], 0.4)), [1, 1, 0, 1, 0]);
});

test('the on-device mask (what the pruner uses) is the same mask, ties included', () => {
  const values = tf.randomNormal([37, 23], 0, 1, 'float32', 4);
  const tied = tf.tensor([0, 0.5, -0.5, 0, 0.5, 2, 0, -0.5], [2, 4]);
  for (const [t, s] of [[values, 0.8], [values, 0.31], [values, 0], [values, 0.9999], [tied, 0.5], [tied, 0.25]] as const) {
    const mask = magnitudeMaskTensor(t, s);
    assert.equal(mask.shape, t.shape);
    assert.equal(Array.from(mask.dataSync()), Array.from(magnitudeMask(t.dataSync(), s)), `sparsity ${s}`);
    mask.dispose();
  }
  tf.dispose([values, tied]);
});

function convNet(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ name: 'c1', inputShape: [8, 8, 1], filters: 4, kernelSize: 3 }));
  model.add(tf.layers.batchNormalization({ name: 'bn' }));
  model.add(tf.layers.conv2d({ name: 'c2', filters: 4, kernelSize: 3 }));
  model.add(tf.layers.flatten({ name: 'flat' }));
  model.add(tf.layers.dense({ name: 'hidden', units: 8 }));
  model.add(tf.layers.dense({ name: 'out', units: 3 }));
  return model;
}

test('layer targets: names, types, first:/last: selectors, exclusions; only kernels are prunable', () => {
  const model = convNet();
  const layers = prunableLayers(model);
  assert.equal(layers.map((l) => `${l.layer}:${l.type}:${l.weight.originalName.split('/').pop()}`), [
    'c1:Conv2D:kernel', 'c2:Conv2D:kernel', 'hidden:Dense:kernel', 'out:Dense:kernel',
  ]);
  const targets = resolveLayerTargets(layers, { sparsity: 0.8, layers: { dense: 0.9, c2: 0.5 }, exclude: ['first:conv2d', 'last:dense'] }, 'stages.p');
  assert.equal(targets.map((t) => [t.layer, t.target, t.excluded]), [
    ['c1', 0, true], ['c2', 0.5, false], ['hidden', 0.9, false], ['out', 0, true],
  ]);
  // A name beats a type; wildcards on names.
  const named = resolveLayerTargets(layers, { sparsity: 0.5, layers: { Dense: 0.7, 'hid*': 0.2 }, exclude: [] }, 'stages.p');
  assert.equal(named.map((t) => t.target), [0.5, 0.5, 0.2, 0.7]);
  for (const bad of [{ exclude: ['bn'] }, { layers: { lstm: 0.5 } }]) {
    try {
      resolveLayerTargets(layers, { sparsity: 0.5, layers: {}, exclude: [], ...bad }, 'stages.p');
      assert.unreachable();
    } catch (err) {
      assert.instance(err, InputError);
      assert.match((err as Error).message, /stages\.p\.(exclude|layers): ".+" selects no prunable layer/);
      assert.match((err as Error).message, 'c1 (Conv2D), c2 (Conv2D), hidden (Dense), out (Dense)');
    }
  }
  model.dispose();
});

const digits = await loadDataset(
  'digits',
  { format: 'csv', path: 'data/digits.csv.gz', header: false, label: 64, normalize: { scale: 16 }, split: { validation: 0.1, test: 0.2 } },
  { baseDir: ROOT, seed: 5 },
);

test('masks hold through fine-tuning: pruned weights stay exactly zero, per-layer sparsity exact', async () => {
  const model = tf.sequential();
  model.add(tf.layers.dense({ name: 'h', inputShape: [64], units: 32, activation: 'relu' }));
  model.add(tf.layers.dense({ name: 'o', units: 10 }));
  const targets = resolveLayerTargets(prunableLayers(model), { sparsity: 0.8, layers: { o: 0.5 }, exclude: [] }, 'stages.p');
  const spe = Math.ceil(digits.train.count / 64);
  const schedule: PruningSchedule = { kind: 'polynomial', initialSparsity: 0, finalSparsity: 0.8, beginStep: 0, endStep: 2 * spe, frequency: spe };
  const pruner = new MagnitudePruner(targets, schedule);
  const zerosAfterEpoch: number[][] = [];
  let frozen: Uint8Array[] | undefined;
  pruner.afterStep(0);
  await fit({
    model, train: digits.train, validation: digits.validation, featureShape: [64], numClasses: 10,
    epochs: 4, batchSize: 64, optimizer: tf.train.adam(0.01), loss: parseLossSpec(undefined), outputIsProbabilities: false,
    monitor: 'val_accuracy', minDelta: 0, restoreBestWeights: false, shuffle: true, seed: 1, purpose: 'test', observer: silentObserver,
    callbacks: {
      afterStep: (step) => pruner.afterStep(step),
      afterEpoch: async () => {
        const table = await pruner.table();
        zerosAfterEpoch.push(table.map((r) => r.zeros));
        const masks = targets.map((t) => Uint8Array.from(t.weight.read().dataSync(), (v) => (v === 0 ? 0 : 1)));
        if (frozen) {
          // From the end step on, the zero pattern never changes: the same weights stay exactly zero.
          masks.forEach((m, i) => assert.equal(Array.from(m), Array.from(frozen![i]), `mask of ${targets[i].layer} moved`));
        } else if (zerosAfterEpoch.length === 2) {
          frozen = masks;
        }
      },
    },
  });
  const table = await pruner.table();
  assert.equal(table.map((r) => r.zeros), [prunedCount(0.8, 64 * 32), prunedCount(0.5, 32 * 10)]);
  assert.equal(zerosAfterEpoch.map((z) => z[0]), [
    prunedCount(0.8 * (1 - 0.5 ** 3), 2048), prunedCount(0.8, 2048), prunedCount(0.8, 2048), prunedCount(0.8, 2048),
  ]);
  // Biases untouched.
  assert.ok(Array.from(model.layers[0].getWeights()[1].dataSync()).some((v) => v !== 0));
  const held = tf.memory().numTensors;
  pruner.dispose();
  assert.is(tf.memory().numTensors, held - 2, 'one mask per pruned kernel, freed on dispose');
  model.dispose();
});

test.run();
