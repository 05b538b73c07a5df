import * as tf from '@tensorflow/tfjs';
import { filterGradOptions, type FilterGradMethod } from '../../src/backend/wasm/conv2d-backprop-filter.js';
import { inputGradOptions, type InputGradMethod } from '../../src/backend/wasm/conv2d-backprop-input.js';
import { initWasmBackend } from '../../src/backend/wasm/init.js';
import { stockKernelFunc } from '../../src/backend/wasm/kernel-utils.js';

// Times each way of computing the conv gradients on the layer shapes of the benchmark models,
// to pick the defaults in conv2d-backprop-*.ts. Best of several runs, since the machine is
// shared. Usage: node dist/bench/cpu-train/conv-grads.js [threads] [batch]

const threads = Number(process.argv[2] ?? 1);
const batch = Number(process.argv[3] ?? 128);
const info = await initWasmBackend({ threads });

interface Layer {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  pad: 'same' | 'valid';
}

const layers: Layer[] = [
  { name: 'seed003 conv1', x: [batch, 28, 28, 1], filter: [3, 3, 1, 32], pad: 'valid' },
  { name: 'seed003 conv2', x: [batch, 13, 13, 32], filter: [3, 3, 32, 64], pad: 'valid' },
  { name: 'seed003 conv3', x: [batch, 5, 5, 64], filter: [3, 3, 64, 64], pad: 'valid' },
  { name: 'big conv2', x: [batch, 28, 28, 32], filter: [3, 3, 32, 32], pad: 'same' },
  { name: 'big conv4', x: [batch, 14, 14, 64], filter: [3, 3, 64, 64], pad: 'same' },
];

function best(f: () => void, reps = 5): number {
  f();
  let min = Infinity;
  for (let r = 0; r < reps; r++) {
    const start = performance.now();
    f();
    min = Math.min(min, performance.now() - start);
  }
  return min;
}

console.log(`threads ${info.threads}, batch ${batch}`);
for (const layer of layers) {
  const x = tf.randomNormal(layer.x);
  const w = tf.randomNormal(layer.filter);
  const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, layer.pad);
  const dy = tf.randomNormal(y.shape);
  const macs = y.size * layer.filter[0] * layer.filter[1] * layer.filter[2];
  const row: string[] = [layer.name.padEnd(14), `${(macs / 1e6).toFixed(0)}M MAC`.padStart(10)];
  const run = (kernel: string, inputs: tf.NamedTensorMap, attrs: Record<string, unknown>): void => {
    tf.tidy(() => {
      (tf.engine().runKernel(kernel, inputs, attrs as tf.NamedAttrMap) as tf.Tensor).dataSync();
    });
  };
  row.push(`fwd ${best(() => tf.tidy(() => void tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, layer.pad).dataSync())).toFixed(1)}`);
  for (const method of ['im2col', 'conv'] as FilterGradMethod[]) {
    filterGradOptions.method = method;
    const ms = best(() => run(tf.Conv2DBackpropFilter, { x, dy }, { strides: 1, pad: layer.pad, dataFormat: 'NHWC', filterShape: layer.filter }));
    row.push(`dW ${method} ${ms.toFixed(1)}`);
  }
  for (const method of ['col2im', 'conv'] as InputGradMethod[]) {
    inputGradOptions.method = method;
    const ms = best(() => run(tf.Conv2DBackpropInput, { dy, filter: w }, { strides: 1, pad: layer.pad, dataFormat: 'NHWC', inputShape: layer.x }));
    row.push(`dx ${method} ${ms.toFixed(1)}`);
  }
  const stock = stockKernelFunc(tf.Conv2DBackpropInput);
  if (stock != null && layer.x[3] > 1) {
    const backend = tf.backend();
    const ms = best(
      () =>
        tf.tidy(() => {
          const out = stock({ inputs: { dy, filter: w }, backend, attrs: { strides: 1, pad: layer.pad, dataFormat: 'NHWC', inputShape: layer.x } }) as tf.TensorInfo;
          backend.disposeData(out.dataId);
        }),
      2,
    );
    row.push(`dx stock ${ms.toFixed(1)}`);
  }
  console.log(row.join('  '));
  tf.dispose([x, w, y, dy]);
}
filterGradOptions.method = 'auto';
inputGradOptions.method = 'auto';

