import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InputError } from '../../src/errors.js';
import { lowerLayersModel } from '../../src/export/lower.js';
import { runGraphWithTf } from './reference.js';

// Lowering a layers model to the export graph: what inference computes, with batch norm folded
// and dropout gone, checked against the layers model's own predictions.

test.before(async () => {
  await tf.setBackend('cpu');
});

/** A model whose batch norms have non-trivial moving statistics (fresh ones are the identity). */
function cnn(): tf.Sequential {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [9, 9, 2], filters: 4, kernelSize: 3, padding: 'same', name: 'c1' }),
      tf.layers.batchNormalization({ name: 'bn1' }),
      tf.layers.activation({ activation: 'relu', name: 'a1' }),
      tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, name: 'dw' }),
      tf.layers.batchNormalization({ name: 'bn2', scale: false }),
      tf.layers.maxPooling2d({ poolSize: 2, padding: 'same', name: 'pool' }),
      tf.layers.dropout({ rate: 0.5, name: 'drop' }),
      tf.layers.flatten({ name: 'flat' }),
      tf.layers.batchNormalization({ name: 'bn3' }),
      tf.layers.dense({ units: 5, name: 'out' }),
    ],
  });
  for (const layer of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
    layer.setWeights(layer.getWeights().map((w, i) => tf.randomUniform(w.shape, i === layer.getWeights().length - 1 ? 0.5 : -1, 2, 'float32', 7 + i)));
  }
  return model;
}

test('batch norm after a float conv/depthwise folds away; one with nothing to fold into stays a scale and shift', async () => {
  const model = cnn();
  const graph = await lowerLayersModel(model, { formats: ['onnx'], appendSoftmax: true, outputName: 'probabilities' });
  assert.equal(
    graph.ops.map((o) => `${o.op}${'activation' in o && o.activation !== 'linear' ? `+${o.activation}` : ''}`),
    ['conv2d+relu', 'depthwiseConv2d', 'maxPool', 'reshape', 'scaleShift', 'dense+softmax'],
  );
  assert.equal(graph.input, { name: 'input', shape: [null, 9, 9, 2], dtype: 'float32' });
  assert.is(graph.output.name, 'probabilities');
  const x = tf.randomNormal([3, 9, 9, 2], 0, 1, 'float32', 1);
  const expected = tf.softmax(model.predict(x) as tf.Tensor);
  const got = runGraphWithTf(graph, x);
  const diff = tf.max(tf.abs(tf.sub(got, expected))).dataSync()[0];
  assert.ok(diff < 1e-5, `max abs difference ${diff}`);
});

test('a quantized kernel is never rewritten: its batch norm stays a separate scale and shift', async () => {
  const model = cnn();
  const kernelName = model.getLayer('c1').weights[0].originalName;
  const quantization = new Map([[kernelName, { dtype: 'uint8' as const, scale: 0.01, min: -1 }]]);
  const graph = await lowerLayersModel(model, { formats: ['tfjs-graph'], quantization });
  assert.equal(graph.ops.slice(0, 2).map((o) => o.op), ['conv2d', 'scaleShift']);
  const conv = graph.ops[0] as Extract<(typeof graph.ops)[number], { op: 'conv2d' }>;
  assert.equal(conv.kernel.quantization, quantization.get(kernelName));
  assert.equal(Array.from(conv.kernel.values), Array.from(model.getLayer('c1').getWeights()[0].dataSync()));
  assert.is(graph.ops[1].op === 'scaleShift' && graph.ops[1].activation, 'relu');
});

test('layers and activations no writer supports are refused, naming the layer and the formats', async () => {
  const swish = tf.sequential({ layers: [tf.layers.dense({ inputShape: [4], units: 2, activation: 'swish', name: 'odd' })] });
  const refused = (model: tf.LayersModel, formats: string[]) => lowerLayersModel(model, { formats }).then(() => undefined, (e: Error) => e);
  const swishError = await refused(swish, ['tfjs-graph', 'onnx']);
  assert.ok(swishError instanceof InputError);
  assert.match(swishError.message, /layer "odd" \(Dense\) cannot be exported to tfjs-graph, onnx: activation "swish"/);
  const lstm = tf.sequential({ layers: [tf.layers.lstm({ inputShape: [3, 4], units: 2, name: 'memory' })] });
  assert.match((await refused(lstm, ['onnx']))!.message, /layer "memory" \(LSTM\) cannot be exported to onnx: supported layers: Dense, Conv2D/);
  const deep = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3, 4], units: 2, name: 'deep' })] });
  assert.match((await refused(deep, ['onnx']))!.message, /layer "deep" \(Dense\).*flatten first/);
});

test.run();
