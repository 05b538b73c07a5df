import * as tf from '@tensorflow/tfjs';
import { initWasmBackend } from '../../src/backend/wasm/init.js';
import { registerOnnxruntimeKernels } from '../../src/backend/onnxruntime/register.js';
import { sessionSettings } from '../../src/backend/onnxruntime/sessions.js';
import { KernelTimer, type Clock } from './kernel-timer.js';
import { buildModel, INPUT_SHAPE, MODEL_NAMES, NUM_CLASSES, trainStep, type ModelName } from './models.js';

// Where the time of one training step goes, per kernel (and per input shapes with --by-shape).
//
//   node dist/bench/cpu-train/profile-step.js [--model seed003] [--batch 128] [--steps 5]
//     [--backend wasm|onnxruntime|cpu] [--threads 1] [--clock wall|cpu] [--by-shape] [--top 20] [--json]
//
// --clock cpu counts this process's CPU time, which other load on a shared machine does not
// inflate (meaningful with one thread only).

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const model = arg('--model', 'seed003') as ModelName;
if (!MODEL_NAMES.includes(model)) throw new Error(`unknown model ${model}`);
const batch = Number(arg('--batch', '128'));
const steps = Number(arg('--steps', '5'));
const backend = arg('--backend', 'wasm');
const threads = Number(arg('--threads', '1'));
const clock = arg('--clock', 'wall') as Clock;
const top = Number(arg('--top', '20'));

if (backend === 'wasm') await initWasmBackend({ threads });
else if (backend === 'onnxruntime') {
  registerOnnxruntimeKernels();
  sessionSettings.threads = threads;
  await initWasmBackend({ threads: 1 });
} else if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed`);

const timer = new KernelTimer(backend === 'onnxruntime' ? 'wasm' : backend, clock, process.argv.includes('--by-shape'));
timer.install();
const net = buildModel(model);
const optimizer = tf.train.adam(1e-3);
const x = tf.randomUniform([batch, ...INPUT_SHAPE]);
const y = tf.oneHot(tf.tensor1d(Array.from({ length: batch }, (_, i) => i % NUM_CLASSES), 'int32'), NUM_CLASSES);
const step = (): void => {
  const loss = trainStep(net, optimizer, x, y);
  loss.dataSync();
  loss.dispose();
};
step();
step();
timer.reset();
const start = performance.now();
for (let i = 0; i < steps; i++) step();
const stepMs = (performance.now() - start) / steps;
const rows = timer.report().map((r) => ({ kernel: r.kernel, callsPerStep: r.calls / steps, msPerStep: r.ms / steps }));
const kernelMs = rows.reduce((s, r) => s + r.msPerStep, 0);

if (process.argv.includes('--json')) {
  console.log(JSON.stringify({ model, batch, backend, threads, clock, stepMs, kernelMs, kernels: rows }));
} else {
  console.log(
    `${model} batch ${batch} on ${backend} (${threads} thread${threads > 1 ? 's' : ''}): ` +
      `${stepMs.toFixed(1)} ms/step wall, ${((batch * 1000) / stepMs).toFixed(0)} samples/s; ` +
      `kernels ${kernelMs.toFixed(1)} ms/step (${clock} clock)`,
  );
  for (const r of rows.slice(0, top)) {
    console.log(
      `${r.kernel.padEnd(58)} ${r.callsPerStep.toFixed(0).padStart(4)}x ${r.msPerStep.toFixed(2).padStart(9)} ms ${((100 * r.msPerStep) / kernelMs).toFixed(1).padStart(5)}%`,
    );
  }
}
