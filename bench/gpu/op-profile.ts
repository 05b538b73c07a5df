// Where does a training step of the Fashion-MNIST teacher go on a backend? Times each kernel the
// step uses, alone, at the step's own shapes (batch 128), and prints a table sorted by share. Bundled for the GPU machine with bench/gpu/bundle.sh.
//   node dist/bench/gpu/op-profile.js [backend=webgpu] [iterations=20] [out.json]
import { writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { selectBackend, type BackendChoice } from '../../src/backend/select.js';

const backend = (process.argv[2] ?? 'webgpu') as BackendChoice;
const iterations = Number(process.argv[3] ?? 20);
const out = process.argv[4];
const BATCH = 128;

interface Row {
  op: string;
  shape: string;
  count: number;
  ms: number;
}

async function time(fn: () => tf.Tensor | tf.Tensor[]): Promise<number> {
  const warm = fn();
  await Promise.all((Array.isArray(warm) ? warm : [warm]).map((t) => t.data()));
  tf.dispose(warm);
  const start = performance.now();
  let last: tf.Tensor | tf.Tensor[] = [];
  for (let i = 0; i < iterations; i++) {
    tf.dispose(last);
    last = fn();
  }
  await Promise.all((Array.isArray(last) ? last : [last]).map((t) => t.data()));
  tf.dispose(last);
  return (performance.now() - start) / iterations;
}

const selection = await selectBackend(backend);
console.log(`backend ${selection.reason} ${selection.details.adapter ?? ''}`);
const rows: Row[] = [];
const add = async (op: string, shape: string, count: number, fn: () => tf.Tensor | tf.Tensor[]) =>
  rows.push({ op, shape, count, ms: await time(fn) });

// The teacher's conv layers: [28x28: 1->32, 32->32], [14x14: 32->64, 64->64], all 3x3 same.
const convs: [number, number, number][] = [[28, 1, 32], [28, 32, 32], [14, 32, 64], [14, 64, 64]];
for (const [size, cin, cout] of convs) {
  const x = tf.randomNormal([BATCH, size, size, cin]) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, cin, cout]) as tf.Tensor4D;
  const dy = tf.randomNormal([BATCH, size, size, cout]) as tf.Tensor4D;
  const shape = `${size}x${size}x${cin}->${cout}`;
  await add('Conv2D', shape, 1, () => tf.conv2d(x, w, 1, 'same'));
  await add('Conv2DBackpropInput', shape, cin > 1 ? 1 : 0, () => tf.conv2dTranspose(dy, w, [BATCH, size, size, cin], 1, 'same'));
  await add('Conv2DBackpropFilter', shape, 1, () => {
    const grad = tf.grad((filter: tf.Tensor) => tf.conv2d(x, filter as tf.Tensor4D, 1, 'same'));
    return grad(w, dy);
  });
  // Batch norm (training mode: moments then normalise) and its gradient, at the same shape.
  const gamma = tf.ones([cout]);
  const beta = tf.zeros([cout]);
  const bn = (t: tf.Tensor) => {
    const { mean, variance } = tf.moments(t, [0, 1, 2]);
    return tf.batchNorm(t, mean, variance, beta, gamma, 1e-3);
  };
  await add('BatchNorm fwd+bwd', `${size}x${size}x${cout}`, 1, () => tf.grad(bn)(dy, dy));
  await add('Relu fwd+bwd', `${size}x${size}x${cout}`, 1, () => tf.grad((t: tf.Tensor) => tf.relu(t))(dy, dy));
  tf.dispose([x, w, dy, gamma, beta]);
}
for (const [size, c] of [[28, 32], [14, 64]] as const) {
  const x = tf.randomNormal([BATCH, size, size, c]) as tf.Tensor4D;
  const dy = tf.randomNormal([BATCH, size / 2, size / 2, c]) as tf.Tensor4D;
  await add('MaxPool fwd+bwd', `${size}x${size}x${c}`, 1, () => tf.grad((t: tf.Tensor) => tf.maxPool(t as tf.Tensor4D, 2, 2, 'valid'))(x, dy));
  await add('Dropout fwd', `${size / 2}x${size / 2}x${c}`, 1, () => tf.dropout(dy, 0.25));
  tf.dispose([x, dy]);
}
{
  const x = tf.randomNormal([BATCH, 3136]);
  const w = tf.randomNormal([3136, 256]);
  const dy = tf.randomNormal([BATCH, 256]);
  await add('MatMul fwd', '128x3136 * 3136x256', 1, () => tf.matMul(x, w));
  await add('MatMul grads (dW, dx)', '128x3136 * 3136x256', 1, () => [tf.matMul(x, dy, true, false), tf.matMul(dy, w, false, true)]);
  tf.dispose([x, w, dy]);
}
{
  // One Adam update of every teacher variable (16 tensors, 871,530 values), as tf.train.adam does it.
  const shapes = [[3, 3, 1, 32], [32], [3, 3, 32, 32], [32], [3, 3, 32, 64], [64], [3, 3, 64, 64], [64], [3136, 256], [256], [256, 10], [10], [32], [32], [64], [64], [256], [256], [32], [32], [64], [64]];
  const vars = shapes.map((s) => tf.variable(tf.randomNormal(s)));
  const grads = vars.map((v) => ({ name: v.name, tensor: tf.randomNormal(v.shape) }));
  const adam = tf.train.adam(1e-3);
  const sgd = tf.train.sgd(1e-3);
  await add('Adam update (all variables)', `${vars.length} tensors`, 1, () => {
    adam.applyGradients(grads);
    return tf.add(vars[0], 0);
  });
  await add('SGD update (all variables)', `${vars.length} tensors`, 1, () => {
    sgd.applyGradients(grads);
    return tf.add(vars[0], 0);
  });
}

const total = rows.reduce((s, r) => s + r.ms * r.count, 0);
rows.sort((a, b) => b.ms * b.count - a.ms * a.count);
console.log(`\nper-kernel time at batch ${BATCH}, ${iterations} iterations each (ms per call)`);
console.log(`${'op'.padEnd(30)}${'shape'.padEnd(24)}${'ms'.padStart(9)}${'share'.padStart(8)}`);
for (const r of rows) {
  const share = ((r.ms * r.count) / total) * 100;
  console.log(`${r.op.padEnd(30)}${r.shape.padEnd(24)}${r.ms.toFixed(2).padStart(9)}${share.toFixed(1).padStart(7)}%`);
}
console.log(`sum of one step's kernels (each counted once per use): ${total.toFixed(1)} ms`);
if (out) await writeFile(out, JSON.stringify({ backend: selection.name, adapter: selection.details.adapter, batch: BATCH, iterations, rows }, null, 2));
process.exit(0);
