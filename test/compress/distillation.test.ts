import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { distillationLoss, logitsOf, type DistillationLossOptions } from '../../src/compress/distillation.js';

await tf.setBackend('cpu');

const value = async (t: tf.Tensor) => (await t.data())[0];
const close = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} != ${expected} (tolerance ${tol})`);
const options = (o: Partial<DistillationLossOptions>): DistillationLossOptions => ({
  temperature: 1, alpha: 0.5, studentIsProbabilities: false, ...o,
});

/** The loss in float64 from its definition, row by row, for comparison. */
function reference(student: number[][], teacher: number[][], labels: number[], o: DistillationLossOptions): number {
  const logSoftmax = (row: number[]) => {
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    return row.map((v) => v - lse);
  };
  let ce = 0;
  let kl = 0;
  student.forEach((s, i) => {
    ce -= logSoftmax(s)[labels[i]];
    const p = logSoftmax(teacher[i].map((v) => v / o.temperature));
    const q = logSoftmax(s.map((v) => v / o.temperature));
    kl += p.reduce((acc, lp, c) => acc + Math.exp(lp) * (lp - q[c]), 0);
  });
  const n = student.length;
  return o.alpha * (ce / n) + (1 - o.alpha) * o.temperature ** 2 * (kl / n);
}

// Two classes, student [0, 0], teacher [ln 3 * T, 0]: at every T the softened teacher is
// (0.75, 0.25) and the softened student (0.5, 0.5), so KL = 0.75 ln 1.5 + 0.25 ln 0.5 exactly.
const KL_HAND = 0.75 * Math.log(1.5) + 0.25 * Math.log(0.5); // 0.1308120...
const CE_HAND = Math.log(2);

async function twoClass(t: number, alpha: number): Promise<number> {
  return value(
    distillationLoss(tf.tensor2d([[0, 0]]), tf.tensor2d([[Math.log(3) * t, 0]]), tf.tensor1d([0], 'int32'), options({ temperature: t, alpha })),
  );
}

test('by hand: alpha = 1 is the cross-entropy, alpha = 0 is T^2 KL, and T^2 scales the soft term', async () => {
  close(KL_HAND, 0.130812, 1e-6, 'the hand value itself');
  close(await twoClass(1, 1), CE_HAND, 1e-6, 'alpha 1, T 1');
  close(await twoClass(4, 1), CE_HAND, 1e-6, 'alpha 1 ignores T');
  close(await twoClass(1, 0), KL_HAND, 1e-6, 'alpha 0, T 1');
  // The same softened distributions at T = 2 and T = 4: the soft term is 4x and 16x the KL.
  close(await twoClass(2, 0), 4 * KL_HAND, 4e-6, 'alpha 0, T 2');
  close(await twoClass(4, 0), 16 * KL_HAND, 1.6e-5, 'alpha 0, T 4');
  close(await twoClass(2, 0.5), 0.5 * CE_HAND + 0.5 * 4 * KL_HAND, 4e-6, 'alpha 0.5, T 2');
  close(await twoClass(4, 0.25), 0.25 * CE_HAND + 0.75 * 16 * KL_HAND, 1.6e-5, 'alpha 0.25, T 4');
});

test('several rows and classes: matches the float64 definition', async () => {
  const student = [[1.5, -0.3, 0.2, 2.1], [-1, 0.5, 3, 0], [0.1, 0.1, -2, 1]];
  const teacher = [[3, -1, 0.5, 4], [0, 0, 5, -1], [2, -0.5, -3, 0.7]];
  const labels = [3, 2, 0];
  for (const o of [options({ temperature: 1, alpha: 0.5 }), options({ temperature: 4, alpha: 0.1 }), options({ temperature: 0.5, alpha: 0.9 })]) {
    const got = await value(distillationLoss(tf.tensor2d(student), tf.tensor2d(teacher), tf.tensor1d(labels, 'int32'), o));
    close(got, reference(student, teacher, labels, o), 2e-5, `T ${o.temperature}, alpha ${o.alpha}`);
  }
});

test('identical logits: the KL term is 0 at every T, so the loss is alpha * CE', async () => {
  const logits = [[2, -1, 0.5], [0, 4, -2]];
  const labels = tf.tensor1d([0, 2], 'int32');
  const ce = reference(logits, logits, [0, 2], options({ alpha: 1 }));
  for (const t of [0.5, 1, 4, 20]) {
    close(await value(distillationLoss(tf.tensor2d(logits), tf.tensor2d(logits), labels, options({ temperature: t, alpha: 0 }))), 0, 1e-6, `KL at T ${t}`);
    close(await value(distillationLoss(tf.tensor2d(logits), tf.tensor2d(logits), labels, options({ temperature: t, alpha: 0.3 }))), 0.3 * ce, 1e-5, `alpha 0.3 at T ${t}`);
  }
});

test('logits far apart stay finite (log-softmax throughout)', async () => {
  const loss = await value(
    distillationLoss(tf.tensor2d([[1000, -1000]]), tf.tensor2d([[-1000, 1000]]), tf.tensor1d([1], 'int32'), options({ temperature: 2, alpha: 0.5 })),
  );
  // CE = 2000; softened: teacher all on class 1, student log q1 = -1000, so KL = 1000 and T^2 KL = 4000.
  assert.ok(Number.isFinite(loss), `loss ${loss}`);
  close(loss, 0.5 * 2000 + 0.5 * 4000, 0.5, 'value');
});

test('gradient in the student logits: matches central differences and the closed form', async () => {
  const student = tf.tensor2d([[1.5, -0.3, 0.2, 2.1], [-1, 0.5, 3, 0]]);
  const teacher = tf.tensor2d([[3, -1, 0.5, 4], [0, 0, 5, -1]]);
  const labels = tf.tensor1d([1, 2], 'int32');
  const o = options({ temperature: 3, alpha: 0.4 });
  const f = (s: tf.Tensor2D) => distillationLoss(s, teacher, labels, o);
  const grad = await tf.grad((s: tf.Tensor) => f(s as tf.Tensor2D))(student).array() as number[][];
  const s0 = (await student.array()) as number[][];
  const teacherRows = (await teacher.array()) as number[][];
  const eps = 1e-2;
  const softmax = (row: number[], t: number) => {
    const e = row.map((v) => Math.exp(v / t));
    const sum = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / sum);
  };
  for (let i = 0; i < 2; i++) {
    for (let c = 0; c < 4; c++) {
      const plus = s0.map((r) => [...r]);
      const minus = s0.map((r) => [...r]);
      plus[i][c] += eps;
      minus[i][c] -= eps;
      const numeric = ((await value(f(tf.tensor2d(plus)))) - (await value(f(tf.tensor2d(minus))))) / (2 * eps);
      close(grad[i][c], numeric, 1e-3, `d loss / d s[${i}][${c}] vs central difference`);
      // alpha (softmax(s) - y) / N + (1 - alpha) T (softmax(s / T) - softmax(t / T)) / N
      const hard = softmax(s0[i], 1)[c] - (c === [1, 2][i] ? 1 : 0);
      const soft = softmax(s0[i], 3)[c] - softmax(teacherRows[i], 3)[c];
      close(grad[i][c], (0.4 * hard + 0.6 * 3 * soft) / 2, 1e-5, `d loss / d s[${i}][${c}] vs closed form`);
    }
  }
});

test('a student with a softmax head: the same loss and gradient as from its logits', async () => {
  const logits = tf.tensor2d([[1.5, -0.3, 0.2], [-1, 0.5, 3]]);
  const teacher = tf.tensor2d([[3, -1, 0.5], [0, 0, 5]]);
  const labels = tf.tensor1d([0, 2], 'int32');
  const o = options({ temperature: 4, alpha: 0.5 });
  const fromLogits = (z: tf.Tensor) => distillationLoss(z as tf.Tensor2D, teacher, labels, o);
  const fromProbs = (z: tf.Tensor) => distillationLoss(tf.softmax(z) as tf.Tensor2D, teacher, labels, { ...o, studentIsProbabilities: true });
  close(await value(fromProbs(logits)), await value(fromLogits(logits)), 1e-5, 'loss');
  const [a, b] = [await tf.grad(fromLogits)(logits).data(), await tf.grad(fromProbs)(logits).data()];
  a.forEach((g, i) => close(b[i], g, 1e-5, `gradient ${i}`));
});

function teacherNet(softmaxHead: boolean): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [4], units: 8, activation: 'relu', kernelInitializer: tf.initializers.randomNormal({ seed: 1 }) }));
  model.add(tf.layers.dense({ units: 3, kernelInitializer: tf.initializers.randomNormal({ seed: 2, stddev: 3 }), ...(softmaxHead ? { activation: 'softmax' as const } : {}) }));
  return model;
}

test('a teacher with a softmax head: log(p) stands in for its logits and gives the same loss', async () => {
  const withLogits = teacherNet(false);
  const withSoftmax = teacherNet(true);
  withSoftmax.setWeights(withLogits.getWeights());
  const x = tf.randomNormal([16, 4], 0, 2, 'float32', 3);
  const logits = withLogits.predict(x) as tf.Tensor2D;
  const recovered = logitsOf(withSoftmax.predict(x) as tf.Tensor2D, true);
  const student = tf.randomNormal([16, 3], 0, 1, 'float32', 4) as tf.Tensor2D;
  const labels = tf.tensor1d(Array.from({ length: 16 }, (_, i) => i % 3), 'int32');
  for (const t of [1, 4]) {
    const o = options({ temperature: t, alpha: 0.2 });
    close(
      await value(distillationLoss(student, recovered, labels, o)),
      await value(distillationLoss(student, logits, labels, o)),
      1e-4,
      `loss at T ${t}`,
    );
  }
});

test('a confident softmax teacher keeps its ruled-out classes small at T = 4 (no 1e-7 clipping)', async () => {
  // Logit gaps of 30 and 40: p ~ 1e-13 and 4e-18. Clipping p at 1e-7 would lift those classes to
  // about 2% each of the softened teacher; the true softened values are 5e-4 and 5e-5.
  const logits = tf.tensor2d([[40, 10, 0]]);
  const recovered = logitsOf(tf.softmax(logits) as tf.Tensor2D, true);
  const soft = await tf.softmax(tf.div(recovered, 4)).data();
  const truth = await tf.softmax(tf.div(logits, 4)).data();
  truth.forEach((p, c) => close(soft[c], p, 1e-6, `softened teacher class ${c}`));
});

test('bad temperature or alpha is refused', () => {
  const args = [tf.tensor2d([[0, 0]]), tf.tensor2d([[0, 0]]), tf.tensor1d([0], 'int32')] as const;
  assert.throws(() => distillationLoss(...args, options({ temperature: 0 })), /temperature/);
  assert.throws(() => distillationLoss(...args, options({ alpha: 1.5 })), /alpha/);
});

test('no tensors leak', () => {
  const before = tf.memory().numTensors;
  const [s, t, y] = [tf.tensor2d([[1, 2]]), tf.tensor2d([[2, 1]]), tf.tensor1d([0], 'int32')];
  const loss = distillationLoss(s, t, y, options({ temperature: 4, alpha: 0.5, studentIsProbabilities: true }));
  tf.dispose([s, t, y, loss]);
  assert.is(tf.memory().numTensors, before);
});

test.run();
