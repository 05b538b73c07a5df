import * as tf from '@tensorflow/tfjs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildGraphDef } from '../../src/export/graph-def.js';
import type { ExportGraph, GraphOp } from '../../src/export/graph-ir.js';
import type { GraphDefObject, NodeDefObject } from '../../src/export/tf-proto.js';
import { tfjsGraphArtifacts, writeTfjsGraphModel, type GraphModelJson } from '../../src/export/tfjs-graph.js';
import { DEFAULT_SHARD_BYTES } from '../../src/models/io.js';
import { createRng } from '../../src/random.js';
import { removeTempDirs, serveFolder, tempDir } from '../helpers.js';
import { runGraphWithTf } from './reference.js';
import { ALL_GRAPHS, constant, convGraph, depthwiseGraph, namesGraph, poolGraph, quantized, quantizedGraph, randomValues } from './tf-graphs.js';

await tf.setBackend('cpu');
test.after(removeTempDirs);

const decode = (s: string) => Buffer.from(s, 'base64').toString('utf8');
const nodeNamed = (g: GraphDefObject, name: string): NodeDefObject => {
  const node = g.node.find((n) => n.name === name);
  assert.ok(node, `no node "${name}"`);
  return node;
};

/** Loads `dir` with stock tf.loadGraphModel over loopback HTTP, exactly as a browser app would. */
async function loadServed(dir: string): Promise<tf.GraphModel> {
  const { url, server } = await serveFolder(dir);
  try {
    return await tf.loadGraphModel(`${url}/model.json`);
  } finally {
    server.close();
  }
}

/** Stock-loaded prediction vs the reference evaluation, on random inputs of two batch sizes. */
async function assertMatchesReference(model: tf.GraphModel, graph: ExportGraph, what: string): Promise<void> {
  const rng = createRng(7, `input:${what}`);
  for (const batch of [1, 3]) {
    const shape = [batch, ...graph.input.shape.slice(1)] as number[];
    const input = tf.tensor(randomValues(shape.reduce((a, b) => a * b, 1), rng, 2), shape);
    const actual = model.predict(input) as tf.Tensor;
    const expected = runGraphWithTf(graph, input);
    assert.equal(actual.shape, expected.shape, `${what}: output shape`);
    const diff = (await tf.max(tf.abs(tf.sub(actual, expected))).data())[0];
    assert.ok(diff <= 1e-4, `${what} (batch ${batch}): max abs diff ${diff}`);
    tf.dispose([input, actual, expected]);
  }
}

for (const [name, make] of Object.entries(ALL_GRAPHS)) {
  for (const fuse of [true, false]) {
    test(`${name} graph (fuse ${fuse}): stock tf.loadGraphModel over HTTP predicts what the ExportGraph means`, async () => {
      const graph = make();
      const dir = await tempDir();
      const { files } = await writeTfjsGraphModel(graph, dir, { fuse });
      assert.equal(files.at(-1), 'model.json');
      assert.equal((await readdir(dir)).sort(), [...files].sort());
      const model = await loadServed(dir);
      try {
        await assertMatchesReference(model, graph, `${name}/fuse=${fuse}`);
      } finally {
        model.dispose();
      }
    });
  }
}

test('model.json has the converter\'s layout: format, signature, topology, one weight group', async () => {
  const graph = convGraph();
  const dir = await tempDir();
  await writeTfjsGraphModel(graph, dir);
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as GraphModelJson;
  assert.equal(json.format, 'graph-model');
  assert.equal(json.convertedBy, 'tfjs-pipeline');
  assert.type(json.generatedBy, 'string');
  assert.equal(json.modelTopology, buildGraphDef(graph));
  assert.equal(json.signature, {
    inputs: { input: { name: 'input:0', dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, { size: '16' }, { size: '16' }, { size: '3' }] } } },
    outputs: { probabilities: { name: 'probabilities:0', dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, { size: '5' }] } } },
  });
  assert.equal(json.weightsManifest.length, 1);
  assert.equal(json.weightsManifest[0].paths, ['group1-shard1of1.bin']);
  // Every Const node has a manifest entry of the same name, in node order; nothing else does.
  const consts = json.modelTopology.node.filter((n) => n.op === 'Const').map((n) => n.name);
  assert.equal(json.weightsManifest[0].weights.map((w) => w.name), consts);
  assert.equal(json.weightsManifest[0].weights.find((w) => w.name === 'flatten/shape'), { name: 'flatten/shape', shape: [2], dtype: 'int32' });
  // The graph's output is the tensor the signature names.
  const output = nodeNamed(json.modelTopology, 'probabilities');
  assert.equal(output.op, 'Identity');
  assert.equal(output.input, ['logits/Softmax']);
  assert.equal(nodeNamed(json.modelTopology, 'input').op, 'Placeholder');
});

test('nodes: fused conv/dense where TensorFlow and tfjs both fuse, plain ops elsewhere, every attr TensorFlow requires', () => {
  const g = buildGraphDef(convGraph());
  const c1 = nodeNamed(g, 'c1');
  assert.equal(c1.op, '_FusedConv2D');
  assert.equal(c1.input, ['input', 'c1/kernel', 'c1/bias']);
  assert.equal(c1.attr!.fused_ops.list!.s!.map(decode), ['BiasAdd', 'Relu']);
  assert.equal(c1.attr!.num_args, { i: '1' });
  assert.equal(c1.attr!.TArgs, { list: { type: ['DT_FLOAT'] } });
  assert.equal(c1.attr!.strides, { list: { i: ['1', '2', '2', '1'] } });
  assert.equal(decode(c1.attr!.padding.s!), 'SAME');
  assert.equal(decode(c1.attr!.data_format.s!), 'NHWC');
  assert.equal(c1.attr!.T, { type: 'DT_FLOAT' });

  const c2 = nodeNamed(g, 'c2'); // no bias: nothing to fuse
  assert.equal(c2.op, 'Conv2D');
  assert.equal(c2.attr!.dilations, { list: { i: ['1', '2', '2', '1'] } });
  assert.equal(decode(c2.attr!.padding.s!), 'VALID');
  assert.equal(nodeNamed(g, 'c3').attr!.fused_ops.list!.s!.map(decode), ['BiasAdd', 'Relu6']);
  assert.equal(nodeNamed(g, 'c4').attr!.fused_ops.list!.s!.map(decode), ['BiasAdd', 'Elu']);
  // sigmoid is no fused activation of TensorFlow's: Conv2D, BiasAdd, Sigmoid.
  assert.equal(nodeNamed(g, 'c5').op, 'Conv2D');
  assert.equal(nodeNamed(g, 'c5/BiasAdd').input, ['c5', 'c5/bias']);
  assert.equal(nodeNamed(g, 'c5/Sigmoid').input, ['c5/BiasAdd']);
  assert.equal(nodeNamed(g, 'c7/Relu').input, ['c7']);
  assert.equal(nodeNamed(g, 'c8').attr!.fused_ops.list!.s!.map(decode), ['BiasAdd']);
  assert.equal(nodeNamed(g, 'flatten').attr, { T: { type: 'DT_FLOAT' }, Tshape: { type: 'DT_INT32' } });
  assert.equal(nodeNamed(g, 'flatten/shape').attr!.value, { tensor: { dtype: 'DT_INT32', tensorShape: { dim: [{ size: '2' }] } } });
  const logits = nodeNamed(g, 'logits');
  assert.equal(logits.op, 'MatMul'); // softmax: MatMul, BiasAdd, Softmax
  assert.equal(logits.attr, { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } });
  assert.equal(nodeNamed(g, 'logits/Softmax').input, ['logits/BiasAdd']);

  const d = buildGraphDef(depthwiseGraph());
  const dw1 = nodeNamed(d, 'dw1');
  assert.equal(dw1.op, 'DepthwiseConv2dNative');
  assert.equal(nodeNamed(d, 'dw1/Relu').input, ['dw1/BiasAdd']);
  assert.equal(nodeNamed(d, 'dw3').attr!.dilations, { list: { i: ['1', '2', '2', '1'] } });
  assert.equal(nodeNamed(d, 'pool1').attr!.ksize, { list: { i: ['1', '2', '2', '1'] } });
  assert.equal(nodeNamed(d, 'gap').op, 'Mean');
  assert.equal(nodeNamed(d, 'gap').attr!.keep_dims, { b: false });
  assert.equal(nodeNamed(d, 'gap').input, ['pool2', 'gap/reduction_indices']);
  const fc1 = nodeNamed(d, 'fc1');
  assert.equal(fc1.op, '_FusedMatMul');
  assert.equal(fc1.attr!.fused_ops.list!.s!.map(decode), ['BiasAdd', 'Relu']);
  assert.equal(nodeNamed(d, 'act').op, 'Sigmoid');

  const p = buildGraphDef(poolGraph());
  assert.equal(nodeNamed(p, 'pointwise').op, 'BatchMatMulV2'); // dense over a rank-4 input
  assert.equal(nodeNamed(p, 'pointwise/Elu').input, ['pointwise/BiasAdd']);
  assert.equal(nodeNamed(p, 'bn').op, 'Mul');
  assert.equal(nodeNamed(p, 'bn/BiasAdd').input, ['bn', 'bn/shift']);
  assert.equal(nodeNamed(p, 'gmp').op, 'Max');
  assert.equal(nodeNamed(p, 'identity').op, 'Identity');

  // The signature's and the constants' names are kept; the ops' own nodes yield.
  const n = buildGraphDef(namesGraph());
  assert.equal(
    n.node.map((node) => `${node.name}=${node.op}(${node.input ?? ''})`),
    [
      'x=Placeholder()',
      'x_1=Relu(x)',
      'flatten/shape_1=Const()',
      'flatten=Reshape(x_1,flatten/shape_1)',
      'flatten/shape=Const()',
      'y/bias=Const()',
      'y_1=MatMul(flatten,flatten/shape)',
      'y/BiasAdd=BiasAdd(y_1,y/bias)',
      'y/Sigmoid=Sigmoid(y/BiasAdd)',
      'y/Sigmoid_1=Tanh(y/Sigmoid)',
      'y=Identity(y/Sigmoid_1)',
    ],
  );

  // fuse: false uses only long-standing public ops.
  const plain = buildGraphDef(convGraph(), { fuse: false });
  assert.ok(plain.node.every((n) => !n.op.startsWith('_')), 'no internal ops');
  assert.equal(nodeNamed(plain, 'c1/Relu').input, ['c1/BiasAdd']);
});

test('quantized constants are stored as their codes with the converter\'s manifest entries', async () => {
  const graph = quantizedGraph();
  const { modelJson, shards } = tfjsGraphArtifacts(graph);
  const weights = modelJson.weightsManifest[0].weights;
  const byName = Object.fromEntries(weights.map((w) => [w.name, w]));
  const convKernel = (graph.ops[0] as Extract<GraphOp, { op: 'conv2d' }>).kernel;
  assert.equal(byName['conv/kernel'], {
    name: 'conv/kernel',
    shape: [3, 3, 2, 4],
    dtype: 'float32',
    quantization: { dtype: 'uint8', scale: convKernel.quantization!.scale, min: convKernel.quantization!.min, original_dtype: 'float32' },
  });
  assert.equal(byName['conv/bias'].quantization, { dtype: 'float16', original_dtype: 'float32' });
  assert.equal(byName['dense/kernel'].quantization, { dtype: 'float16', original_dtype: 'float32' });
  assert.equal(byName['dense/bias'].quantization!.dtype, 'uint16');
  assert.equal(byName['flatten/shape'].dtype, 'int32');
  // 72 one-byte codes + 4 halves + 2 int32 + 432 halves + 3 two-byte codes.
  assert.equal(shards.reduce((n, s) => n + s.byteLength, 0), 72 + 8 + 8 + 864 + 6);
  // The first 72 bytes are the codes: code * scale + min gives back the kernel's values.
  const { scale, min } = convKernel.quantization!;
  for (let i = 0; i < 72; i++) assert.ok(Math.fround(shards[0][i] * scale! + min!) === convKernel.values[i], `code ${i}`);
});

test('weights are cut into 4 MiB shards (a 2M-float kernel makes two), and the model still loads', async () => {
  const rng = createRng(5, 'big');
  const graph: ExportGraph = {
    input: { name: 'input', shape: [null, 1000], dtype: 'float32' },
    output: { name: 'output', shape: [null, 2000], dtype: 'float32' },
    ops: [{ op: 'dense', name: 'big', kernel: constant('big/kernel', [1000, 2000], rng, 0.05), bias: constant('big/bias', [2000], rng), activation: 'relu' }],
  };
  const dir = await tempDir();
  const { files } = await writeTfjsGraphModel(graph, dir);
  assert.equal(files, ['group1-shard1of2.bin', 'group1-shard2of2.bin', 'model.json']);
  assert.equal((await stat(join(dir, files[0]))).size, DEFAULT_SHARD_BYTES);
  assert.equal((await stat(join(dir, files[1]))).size, 2_002_000 * 4 - DEFAULT_SHARD_BYTES);
  const model = await loadServed(dir);
  try {
    await assertMatchesReference(model, graph, 'big');
  } finally {
    model.dispose();
  }
});

test('shardBytes: weights straddle small shards and load back exactly', async () => {
  const graph = quantizedGraph(); // 958 bytes: codes of odd sizes straddle 100-byte shards
  const dir = await tempDir();
  const { files } = await writeTfjsGraphModel(graph, dir, { shardBytes: 100 });
  assert.equal(files.length, 11);
  assert.equal(files[0], 'group1-shard1of10.bin');
  const model = await loadServed(dir);
  try {
    await assertMatchesReference(model, graph, 'small shards');
  } finally {
    model.dispose();
  }
});

test('clear errors for what cannot be exported', () => {
  const base = () => depthwiseGraph();
  const rng = createRng(6, 'errors');
  const throws = (graph: ExportGraph, pattern: RegExp, what: string, options = {}) =>
    assert.throws(() => tfjsGraphArtifacts(graph, options), pattern, what);

  throws({ ...base(), ops: [{ op: 'activation', name: 'a', activation: 'gelu' as never }] }, /op "a": unsupported activation "gelu"/, 'activation');
  throws({ ...base(), ops: [{ op: 'lstm', name: 'l' } as never] }, /unsupported op "lstm" \("l"\)/, 'op kind');
  throws(
    { input: { name: 'v', shape: [null], dtype: 'float32' }, output: { name: 'w', shape: [null, 3], dtype: 'float32' }, ops: [{ op: 'dense', name: 'fc', kernel: constant('k', [1, 3], rng), activation: 'linear' }] },
    /op "fc": dense needs an input of rank 2 or more, got rank 1/,
    'dense on a vector',
  );
  throws(
    { ...base(), ops: [{ op: 'dense', name: 'fc', kernel: constant('k', [300, 3], rng), activation: 'linear' }] },
    /op "fc": its kernel expects 300 input channels\/features, the input has 3/,
    'dense features',
  );
  throws(
    { ...base(), ops: [{ op: 'conv2d', name: 'c', kernel: constant('c/k', [3, 3, 4, 2], rng), strides: [1, 1], dilations: [1, 1], padding: 'same', activation: 'relu' }] },
    /op "c": its kernel expects 4 input channels\/features, the input has 3/,
    'channels',
  );
  throws(
    { ...base(), ops: [{ op: 'scaleShift', name: 's', scale: constant('image', [3], rng), shift: constant('shift', [3], rng), activation: 'linear' }, { op: 'globalAvgPool', name: 'g' }] },
    /op "s": scale "image" has the name of the graph input/,
    'constant named like the input',
  );
  throws(
    { ...base(), ops: [{ op: 'scaleShift', name: 's', scale: constant('same', [3], rng), shift: constant('same', [3], rng), activation: 'linear' }, { op: 'globalAvgPool', name: 'g' }] },
    /two nodes would be named "same" \(op "s"'s scale and op "s"'s shift\)/,
    'two constants of one name',
  );
  throws({ ...base(), output: { ...base().output, name: 'image' } }, /the graph input and output are both named "image"/, 'input = output');
  throws({ ...base(), ops: [{ op: 'activation', name: 'bad name:0', activation: 'relu' }] }, /"bad name:0" is not a valid TensorFlow node name/, 'node name');
  throws({ ...base(), ops: [] }, /the ops compute shape \[null,10,10,3\] but the output "scores" is declared \[null,3\]/, 'output shape');
  throws({ ...base(), ops: [{ op: 'reshape', name: 'r', shape: [7] }] }, /op "r": cannot reshape \[10,10,3\] \(per example\) to \[7\]/, 'reshape size');
  throws(
    { ...base(), ops: [{ op: 'maxPool', name: 'p', poolSize: [11, 11], strides: [1, 1], padding: 'valid' }] },
    /does not fit an input of size 10 with VALID padding/,
    'window too large',
  );
  throws(base(), /shardBytes must be a positive integer, got 0/, 'shard size', { shardBytes: 0 });

  // A constant whose values are not what its quantization entry decodes to.
  const q = quantized('q/kernel', [3, 3, 3, 1], rng, 'uint8');
  q.values[5] += q.quantization!.scale! / 3;
  throws(
    { ...base(), ops: [{ op: 'depthwiseConv2d', name: 'q', kernel: q, strides: [1, 1], dilations: [1, 1], padding: 'same', activation: 'linear' }, { op: 'globalAvgPool', name: 'gap' }] },
    /constant "q\/kernel" is marked uint8-quantized .* value .* at index 5 is no code \* scale \+ min/,
    'bad codes',
  );
  const h = quantized('h/kernel', [3, 3, 3, 1], rng, 'float16');
  h.values[2] = 0.1;
  throws(
    { ...base(), ops: [{ op: 'depthwiseConv2d', name: 'h', kernel: h, strides: [1, 1], dilations: [1, 1], padding: 'same', activation: 'linear' }, { op: 'globalAvgPool', name: 'gap' }] },
    /constant "h\/kernel" is marked float16 but value 0.1.* at index 2 is not a float16 value/,
    'bad float16',
  );
});

test.run();
