// One training step of a benchmark model on webgpu, taken apart: wall time per step, the time the
// CPU spends only enqueueing it (JS, bind groups, uniforms: the part no shader speeds up), and each
// kernel's GPU time from timestamp queries, summed by kernel. Wall close to the enqueue time means
// the step is CPU-bound; wall close to the GPU sum means it is shader-bound.
//   node [--cpu-prof] dist/bench/gpu/step-profile.js [model=teacher] [batch=512] [steps=10] [out.json]
import { writeFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { selectWebgpuWithTimestamps } from './timestamps.js';
import { createOptimizer } from '../../src/models/optimizers.js';
import { classificationLoss } from '../../src/models/losses.js';
import { buildModel, FEATURES, type ModelName } from './models.js';

const model = (process.argv[2] ?? 'teacher') as ModelName;
const batch = Number(process.argv[3] ?? 512);
const steps = Number(process.argv[4] ?? 10);
const out = process.argv[5];

const selection = await selectWebgpuWithTimestamps();

const net = buildModel(model);
const optimizer = createOptimizer({ adam: { learningRate: 0.001 } });
const x = tf.randomUniform([batch, ...FEATURES[model]]);
const y = tf.randomUniform([batch], 0, 10, 'int32') as tf.Tensor1D;
const loss = { name: 'sparseCategoricalCrossentropy' as const, labelSmoothing: 0 };
const step = () =>
  optimizer.minimize(() => classificationLoss(loss, y, net.apply(x, { training: true }) as tf.Tensor2D, false), true)!;

for (let i = 0; i < 3; i++) await step().data();

let enqueueMs = 0;
const wallStart = performance.now();
let last: tf.Scalar | undefined;
for (let i = 0; i < steps; i++) {
  last?.dispose();
  const t0 = performance.now();
  last = step();
  enqueueMs += performance.now() - t0;
}
await last!.data();
const wallMs = (performance.now() - wallStart) / steps;
enqueueMs /= steps;
last!.dispose();

const profile = await tf.profile(() => step());
const byKernel = new Map<string, { count: number; ms: number }>();
for (const k of profile.kernels) {
  const key = `${k.name} ${k.inputShapes.map((s) => `[${s}]`).join(' ')}`;
  const row = byKernel.get(key) ?? { count: 0, ms: 0 };
  row.count++;
  row.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
  byKernel.set(key, row);
}
const gpuMs = [...byKernel.values()].reduce((s, r) => s + r.ms, 0);
console.log(
  `${model} batch ${batch}: wall ${wallMs.toFixed(2)} ms/step, enqueue (CPU) ${enqueueMs.toFixed(2)} ms/step, ` +
    `GPU ${gpuMs.toFixed(2)} ms in ${profile.kernels.length} kernels (${(batch / (wallMs / 1000)).toFixed(0)} samples/s)`,
);
const rows = [...byKernel.entries()].map(([kernel, r]) => ({ kernel, ...r })).sort((a, b) => b.ms - a.ms);
for (const r of rows.slice(0, 25)) console.log(`  ${r.ms.toFixed(3).padStart(8)} ms  x${String(r.count).padEnd(3)} ${r.kernel}`);
const byName = new Map<string, { count: number; ms: number }>();
for (const r of rows) {
  const name = r.kernel.split(' ')[0];
  const agg = byName.get(name) ?? { count: 0, ms: 0 };
  agg.count += r.count;
  agg.ms += r.ms;
  byName.set(name, agg);
}
console.log('by kernel name (count, GPU ms):');
for (const [name, r] of [...byName.entries()].sort((a, b) => b[1].ms - a[1].ms)) console.log(`  ${name.padEnd(28)} x${String(r.count).padEnd(4)} ${r.ms.toFixed(3)} ms`);
if (out) await writeFile(out, JSON.stringify({ adapter: selection.details.adapter, model, batch, steps, wallMs, enqueueMs, gpuMs, kernels: profile.kernels.length, rows }, null, 2));
process.exit(0);
