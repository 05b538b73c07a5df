// Breaks the slow parts of a teacher training step (batch norm forward+backward, dropout, a
// whole step of the model) into the kernels tfjs dispatches, with each kernel's GPU time from
// WebGPU timestamp queries next to the wall time of the whole call: where the two differ, the
// time goes to the CPU side (JS, uploads, readbacks), not to shaders.
//   node dist/bench/gpu/kernel-profile.js [iterations=5]
import * as tf from '@tensorflow/tfjs';
import { selectWebgpuWithTimestamps } from './timestamps.js';

const iterations = Number(process.argv[2] ?? 5);

const selection = await selectWebgpuWithTimestamps();

async function breakdown(label: string, fn: () => tf.TensorContainer): Promise<void> {
  tf.dispose(fn() as tf.Tensor);
  const wallStart = performance.now();
  for (let i = 0; i < iterations; i++) {
    const out = fn();
    const list = (Array.isArray(out) ? out : [out]) as tf.Tensor[];
    await Promise.all(list.map((t) => t.data()));
    tf.dispose(list);
  }
  const wall = (performance.now() - wallStart) / iterations;
  const profile = await tf.profile(() => fn());
  const rows = await Promise.all(
    profile.kernels.map(async (k) => ({
      name: k.name,
      shapes: k.inputShapes.map((s) => `[${s}]`).join(' '),
      ms: typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : NaN,
    })),
  );
  const gpu = rows.reduce((s, r) => s + (Number.isFinite(r.ms) ? r.ms : 0), 0);
  console.log(`\n${label}: wall ${wall.toFixed(2)} ms per call, GPU ${gpu.toFixed(2)} ms in ${rows.length} kernels`);
  for (const r of rows.sort((a, b) => b.ms - a.ms).slice(0, 14)) {
    console.log(`  ${r.name.padEnd(26)}${r.ms.toFixed(3).padStart(9)} ms  ${r.shapes}`);
  }
}

const x = tf.randomNormal([128, 28, 28, 32]);
const dy = tf.randomNormal([128, 28, 28, 32]);
const gamma = tf.ones([32]);
const beta = tf.zeros([32]);
const bn = (t: tf.Tensor) => {
  const { mean, variance } = tf.moments(t, [0, 1, 2]);
  return tf.batchNorm(t, mean, variance, beta, gamma, 1e-3);
};
await breakdown('batch norm fwd+bwd 128x28x28x32', () => tf.grad(bn)(x, dy));
await breakdown('moments only', () => {
  const { mean, variance } = tf.moments(x, [0, 1, 2]);
  return [mean, variance];
});
const layer = tf.layers.batchNormalization({ momentum: 0.9 });
await breakdown('tfjs-layers BatchNormalization training fwd+bwd', () =>
  tf.grad((t: tf.Tensor) => layer.apply(t, { training: true }) as tf.Tensor)(x, dy),
);
const drop = tf.layers.dropout({ rate: 0.25 });
await breakdown('tfjs-layers Dropout training', () => drop.apply(x, { training: true }) as tf.Tensor);
process.exit(0);
