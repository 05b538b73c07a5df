import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { quantizeTensor, type QuantizationDtype } from '../../src/compress/quantization.js';
import { InputError } from '../../src/errors.js';
import { createRng } from '../../src/random.js';
import { GRAPH_ACTIVATIONS, type ConstTensor, type ExportGraph, type GraphOp } from '../../src/export/graph-ir.js';
import { ONNX_IR_VERSION, ONNX_OPSET, writeOnnxModel } from '../../src/export/onnx.js';
import { DataType, decodeModel, type OnnxModel } from '../../src/export/onnx-proto.js';
import { runGraphWithTf } from './reference.js';
import { ALL_GRAPHS } from './tf-graphs.js';

await tf.setBackend('cpu');

// ---- building graphs ----

// Seeded: every run builds the same weights and inputs.
const random = createRng(42, 'onnx-test');
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function uniform(n: number, scale = 0.5): Float32Array {
  return Float32Array.from({ length: n }, () => (random() * 2 - 1) * scale);
}

function weight(name: string, shape: number[], scale = 0.5): ConstTensor {
  return { name, shape, values: uniform(size(shape), scale) };
}

/** A constant whose values are the dequantization of `dtype` codes, as a quantized model.json loads. */
function quantizedWeight(name: string, shape: number[], dtype: QuantizationDtype): ConstTensor {
  if (dtype === 'float16') {
    // Multiples of 1/64 in [-1, 1] are exact in float16, so these are float16 values as loaded.
    const values = Float32Array.from({ length: size(shape) }, () => Math.round((random() * 2 - 1) * 64) / 64);
    return { name, shape, values, quantization: { dtype, original_dtype: 'float32' } };
  }
  const raw = uniform(size(shape));
  // Spanning 0, as trained weights do: the converter then nudges min so that 0 is a code.
  [raw[0], raw[1]] = [-0.5, 0.5];
  const { entry, data } = quantizeTensor(raw, dtype);
  // tfjs's own dequantization: q * scale + min, rounded to float32.
  const values = Float32Array.from(data, (q) => q * entry.scale! + entry.min!);
  return { name, shape, values, quantization: entry };
}

/** A graph over `inputShape` (batch null); the output shape is what the reference computes. */
function chain(inputShape: (number | null)[], ops: GraphOp[]): ExportGraph {
  const graph: ExportGraph = { input: { name: 'input', shape: inputShape, dtype: 'float32' }, output: { name: 'output', shape: [], dtype: 'float32' }, ops };
  const probe = tf.zeros(inputShape.map((d) => d ?? 1));
  const out = runGraphWithTf(graph, probe);
  graph.output.shape = [null, ...out.shape.slice(1)];
  tf.dispose([probe, out]);
  return graph;
}

const conv = (name: string, inC: number, outC: number, extra: Partial<Extract<GraphOp, { op: 'conv2d' }>> = {}): GraphOp => ({
  op: 'conv2d',
  name,
  kernel: weight(`${name}/kernel`, [3, 3, inC, outC]),
  bias: weight(`${name}/bias`, [outC]),
  strides: [1, 1],
  dilations: [1, 1],
  padding: 'same',
  activation: 'linear',
  ...extra,
});

const dense = (name: string, inUnits: number, units: number, extra: Partial<Extract<GraphOp, { op: 'dense' }>> = {}): GraphOp => ({
  op: 'dense',
  name,
  kernel: weight(`${name}/kernel`, [inUnits, units]),
  bias: weight(`${name}/bias`, [units]),
  activation: 'linear',
  ...extra,
});

// ---- running both ----

async function runOnnx(graph: ExportGraph, input: tf.Tensor, bytes = writeOnnxModel(graph)): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const feeds = { [graph.input.name]: new ort.Tensor('float32', input.dataSync() as Float32Array, input.shape) };
    return (await session.run(feeds))[graph.output.name];
  } finally {
    await session.release();
  }
}

/** Runs `graph` in onnxruntime and in tfjs on the same random batch; asserts they agree to 1e-4. */
async function assertMatchesTf(graph: ExportGraph, batch = 2): Promise<void> {
  const shape = [batch, ...graph.input.shape.slice(1).map((d) => d!)];
  const input = tf.tensor(uniform(size(shape), 2), shape);
  const expected = runGraphWithTf(graph, input);
  const actual = await runOnnx(graph, input);
  assert.equal([...actual.dims], expected.shape, 'output shape');
  const want = expected.dataSync();
  const got = actual.data as Float32Array;
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(want[i] - got[i]));
  assert.ok(worst <= 1e-4, `max |onnx - tfjs| = ${worst}`);
  tf.dispose([input, expected]);
}

const nodesOf = (model: OnnxModel, opType: string) => model.graph.node.filter((n) => n.opType === opType);

// ---- the model file ----

test('ModelProto: IR 8, opset 13, producer, doc string, NHWC input with a symbolic batch', async () => {
  const graph = chain([null, 5, 5, 2], [conv('c', 2, 3)]);
  const model = decodeModel(writeOnnxModel(graph, { producerVersion: '1.2.3', docString: 'a test model' }));
  assert.is(model.irVersion, ONNX_IR_VERSION);
  assert.is(ONNX_IR_VERSION, 8);
  assert.equal(model.opsetImport, [{ domain: '', version: 13 }]);
  assert.is(ONNX_OPSET, 13);
  assert.is(model.producerName, 'tfjs-pipeline');
  assert.is(model.producerVersion, '1.2.3');
  assert.is(model.docString, 'a test model');
  assert.equal(model.graph.input.map((i) => i.name), ['input']);
  assert.equal(model.graph.input[0].type.tensorType.elemType, DataType.FLOAT);
  assert.equal(model.graph.input[0].type.tensorType.shape!.dim, [{ dimParam: 'batch' }, { dimValue: 5 }, { dimValue: 5 }, { dimValue: 2 }]);
  assert.equal(model.graph.output[0].type.tensorType.shape!.dim, [{ dimParam: 'batch' }, { dimValue: 5 }, { dimValue: 5 }, { dimValue: 3 }]);
  assert.equal(model.graph.output.map((o) => o.name), ['output']);
  const plain = decodeModel(writeOnnxModel(graph));
  assert.is(plain.producerVersion, undefined);
  assert.is(plain.docString, undefined);
  await assertMatchesTf(graph);
});

// ---- conv ----

for (const [label, extra] of [
  ['same, stride 1', {}],
  ['same, stride 2 (odd input: TF pads the extra row/column at the end)', { strides: [2, 2] }],
  ['same, strides [2, 1]', { strides: [2, 1] }],
  ['valid, stride 2', { padding: 'valid', strides: [2, 2] }],
  ['same, dilation 2 (explicit pads: onnxruntime has no SAME with dilation)', { dilations: [2, 2] }],
  ['same, dilations [2, 3], 5x4 kernel (total padding 8 and 9: the odd one at the end)', { dilations: [2, 3], kernel: weight('k54', [5, 4, 3, 4]) }],
  ['valid, dilation [2, 1], no bias', { padding: 'valid', dilations: [2, 1], bias: undefined }],
  ['5x2 kernel, relu', { kernel: weight('k52', [5, 2, 3, 4]), activation: 'relu' }],
] as [string, Partial<Extract<GraphOp, { op: 'conv2d' }>>][]) {
  test(`conv2d ${label}`, async () => {
    await assertMatchesTf(chain([null, 9, 8, 3], [conv('conv', 3, 4, extra)]));
  });
}

for (const [label, padding, strides, dilations] of [
  ['same, stride 2', 'same', [2, 2], [1, 1]],
  ['valid, stride 1', 'valid', [1, 1], [1, 1]],
  ['same, dilation 2', 'same', [1, 1], [2, 2]],
] as const) {
  test(`depthwiseConv2d with multiplier 2: ${label} (output channel c*2+m, as TF orders it)`, async () => {
    const op: GraphOp = {
      op: 'depthwiseConv2d',
      name: 'dw',
      kernel: weight('dw/kernel', [3, 3, 3, 2]),
      bias: weight('dw/bias', [6]),
      strides: [...strides],
      dilations: [...dilations],
      padding,
      activation: 'relu6',
    };
    await assertMatchesTf(chain([null, 7, 7, 3], [op]));
  });
}

// ---- pooling ----

for (const kind of ['maxPool', 'avgPool'] as const) {
  for (const [padding, poolSize, strides] of [
    ['same', [3, 3], [2, 2]],
    ['same', [2, 2], [2, 2]],
    ['valid', [3, 2], [2, 1]],
    ['valid', [2, 2], [2, 2]],
  ] as const) {
    test(`${kind} ${padding} pool ${poolSize} strides ${strides} (avg excludes padding like TF)`, async () => {
      // Odd sizes so that 'same' pads, and raw input (no conv) so the pool is the first NCHW op.
      await assertMatchesTf(chain([null, 7, 9, 3], [{ op: kind, name: 'pool', poolSize: [...poolSize], strides: [...strides], padding }]));
    });
  }
}

for (const kind of ['globalAvgPool', 'globalMaxPool'] as const) {
  test(`${kind} after a conv (NCHW: Global*Pool + Flatten) and on the raw NHWC input (Reduce*)`, async () => {
    const afterConv = chain([null, 6, 5, 3], [conv('c', 3, 4, { activation: 'relu' }), { op: kind, name: 'gp' }, dense('d', 4, 2)]);
    await assertMatchesTf(afterConv);
    const model = decodeModel(writeOnnxModel(afterConv));
    assert.equal(model.graph.node.map((n) => n.opType), ['Transpose', 'Conv', 'Relu', kind === 'globalAvgPool' ? 'GlobalAveragePool' : 'GlobalMaxPool', 'Flatten', 'Gemm']);

    const direct = chain([null, 6, 5, 3], [{ op: kind, name: 'gp' }]);
    await assertMatchesTf(direct);
    assert.not.ok(nodesOf(decodeModel(writeOnnxModel(direct)), 'Transpose').length, 'no transpose without a conv');
  });
}

// ---- dense, reshape, scaleShift ----

test('flatten after conv + pool: transposed back to NHWC first, so the flat order is TF’s', async () => {
  const graph = chain(
    [null, 8, 8, 2],
    [
      conv('c1', 2, 4, { activation: 'relu' }),
      { op: 'maxPool', name: 'p1', poolSize: [2, 2], strides: [2, 2], padding: 'valid' },
      conv('c2', 4, 3, { strides: [2, 2], activation: 'elu' }),
      { op: 'reshape', name: 'flatten', shape: [2 * 2 * 3] },
      dense('d1', 12, 5, { activation: 'tanh' }),
      dense('d2', 5, 3, { activation: 'softmax' }),
    ],
  );
  await assertMatchesTf(graph, 3);
  const model = decodeModel(writeOnnxModel(graph));
  const transposes = nodesOf(model, 'Transpose');
  assert.equal(transposes.map((t) => t.attribute![0].ints), [[0, 3, 1, 2], [0, 2, 3, 1]], 'one transpose in, one out');
  assert.is(model.graph.node.at(-1)!.output[0], 'output');
});

test('reshape to a rank-3 shape with -1, then dense over the last axis (MatMul + Add), then back to NHWC via reshape', async () => {
  const graph = chain(
    [null, 4, 6, 2],
    [
      conv('c', 2, 3),
      { op: 'reshape', name: 'r1', shape: [-1, 3] },
      dense('d', 3, 5, { activation: 'sigmoid' }),
      { op: 'reshape', name: 'r2', shape: [4, 6, 5] },
      { op: 'avgPool', name: 'p', poolSize: [2, 2], strides: [1, 1], padding: 'same' },
    ],
  );
  await assertMatchesTf(graph);
});

test('dense on a rank-4 value straight after a conv goes back to NHWC (channels last) first', async () => {
  const graph = chain([null, 5, 5, 3], [conv('c', 3, 4), dense('d', 4, 2, { bias: undefined, activation: 'relu' })]);
  await assertMatchesTf(graph);
  assert.equal(decodeModel(writeOnnxModel(graph)).graph.node.map((n) => n.opType), ['Transpose', 'Conv', 'Transpose', 'MatMul', 'Relu']);
});

test('scaleShift in NCHW (constants [C,1,1]), in NHWC on the input and on a rank-2 value', async () => {
  const scaleShift = (name: string, c: number, activation: Extract<GraphOp, { op: 'scaleShift' }>['activation']): GraphOp => ({
    op: 'scaleShift',
    name,
    scale: weight(`${name}/scale`, [c], 2),
    shift: weight(`${name}/shift`, [c], 1),
    activation,
  });
  const graph = chain(
    [null, 5, 4, 3],
    [scaleShift('bn0', 3, 'linear'), conv('c', 3, 4), scaleShift('bn1', 4, 'relu'), { op: 'globalAvgPool', name: 'gap' }, scaleShift('bn2', 4, 'sigmoid')],
  );
  await assertMatchesTf(graph);
  const model = decodeModel(writeOnnxModel(graph));
  const dims = (name: string) => model.graph.initializer.find((t) => t.name === name)!.dims;
  assert.equal(dims('bn0/scale'), [3]);
  assert.equal(dims('bn1/scale'), [4, 1, 1]);
  assert.equal(dims('bn2/shift'), [4]);
});

// ---- activations ----

for (const activation of GRAPH_ACTIVATIONS) {
  test(`activation ${activation}: on a conv (NCHW, softmax over axis 1), as an op, and on a dense`, async () => {
    await assertMatchesTf(chain([null, 4, 5, 3], [conv('c', 3, 4, { activation })]));
    await assertMatchesTf(chain([null, 4, 5, 3], [conv('c', 3, 4), { op: 'activation', name: 'act', activation }]));
    await assertMatchesTf(chain([null, 6], [dense('d', 6, 4, { activation }), { op: 'activation', name: 'act', activation }]));
  });
}

test('linear adds no node; an empty graph is an Identity', async () => {
  const graph = chain([null, 3], [{ op: 'activation', name: 'noop', activation: 'linear' }]);
  assert.equal(decodeModel(writeOnnxModel(graph)).graph.node.map((n) => n.opType), ['Identity']);
  await assertMatchesTf(graph);
});

test('the TF writers’ fixture graphs (tf-graphs.ts) run in onnxruntime too', async () => {
  for (const [name, make] of Object.entries(ALL_GRAPHS)) {
    try {
      await assertMatchesTf(make(), 3);
    } catch (err) {
      throw new Error(`${name} graph: ${(err as Error).message}`, { cause: err });
    }
  }
});

// ---- quantized constants ----

test('uint8 conv kernel: stored as OIHW-transposed codes + DequantizeLinear, same output as tfjs', async () => {
  const kernel = quantizedWeight('c/kernel', [3, 2, 3, 4], 'uint8');
  const graph = chain([null, 6, 6, 3], [conv('c', 3, 4, { kernel, activation: 'relu' })]);
  await assertMatchesTf(graph);

  const model = decodeModel(writeOnnxModel(graph));
  const codes = model.graph.initializer.find((t) => t.name === 'c/kernel/quantized')!;
  assert.is(codes.dataType, DataType.UINT8);
  assert.equal(codes.dims, [4, 3, 3, 2]);
  const { scale, min } = kernel.quantization!;
  const zeroPoint = model.graph.initializer.find((t) => t.name === 'c/kernel/zero_point')!;
  assert.is(zeroPoint.dataType, DataType.UINT8);
  assert.is(zeroPoint.rawData[0], Math.round(-min! / scale!));
  // Code at OIHW [o, i, h, w] is the code of HWIO [h, w, i, o].
  const hwio = (h: number, w: number, i: number, o: number) => ((h * 2 + w) * 3 + i) * 4 + o;
  const oihw = (o: number, i: number, h: number, w: number) => ((o * 3 + i) * 3 + h) * 2 + w;
  for (const [h, w, i, o] of [[0, 0, 0, 0], [2, 1, 2, 3], [1, 0, 2, 1], [0, 1, 1, 2]]) {
    const value = codes.rawData[oihw(o, i, h, w)] * scale! + min!;
    assert.ok(Math.abs(value - kernel.values[hwio(h, w, i, o)]) < 1e-6, `code at [${h},${w},${i},${o}]`);
  }
  const dq = nodesOf(model, 'DequantizeLinear');
  assert.equal(dq.map((n) => n.input), [['c/kernel/quantized', 'c/kernel/scale', 'c/kernel/zero_point']]);
  assert.equal(nodesOf(model, 'Conv')[0].input[1], dq[0].output[0]);
  assert.not.ok(model.graph.initializer.some((t) => t.name === 'c/kernel' && t.dataType === DataType.FLOAT), 'no float copy of the kernel');
});

test('uint8 depthwise and dense kernels and biases all dequantize exactly (dense kernel: Cast/Sub/Mul, not DequantizeLinear)', async () => {
  const graph = chain(
    [null, 5, 5, 3],
    [
      {
        op: 'depthwiseConv2d',
        name: 'dw',
        kernel: quantizedWeight('dw/kernel', [3, 3, 3, 2], 'uint8'),
        bias: quantizedWeight('dw/bias', [6], 'uint8'),
        strides: [2, 2],
        dilations: [1, 1],
        padding: 'same',
        activation: 'relu',
      },
      { op: 'reshape', name: 'flatten', shape: [3 * 3 * 6] },
      dense('d', 54, 4, { kernel: quantizedWeight('d/kernel', [54, 4], 'uint8'), bias: quantizedWeight('d/bias', [4], 'uint8') }),
    ],
  );
  // Also the check that onnxruntime's default optimizations (DequantizeLinear -> Gemm becomes
  // MatMulNBits with int8 activations, ~1e-2 off) do not apply to the dense kernel.
  await assertMatchesTf(graph);
  const model = decodeModel(writeOnnxModel(graph));
  assert.equal(nodesOf(model, 'DequantizeLinear').map((n) => n.output[0]), ['dw/kernel', 'dw/bias', 'd/bias']);
  assert.is(model.graph.initializer.find((t) => t.name === 'd/kernel/quantized')?.dataType, DataType.UINT8);
  assert.equal(nodesOf(model, 'Cast').map((n) => n.input), [['d/kernel/quantized']]);
  assert.equal(nodesOf(model, 'Gemm')[0].input.slice(1), ['d/kernel', 'd/bias']);
});

test('uint8 kernel of a dense over a rank-4 value (MatMul) matches tfjs', async () => {
  const kernel = quantizedWeight('d/kernel', [4, 5], 'uint8');
  const graph = chain([null, 3, 3, 2], [conv('c', 2, 4), dense('d', 4, 5, { kernel, activation: 'relu' })]);
  await assertMatchesTf(graph);
  assert.equal(nodesOf(decodeModel(writeOnnxModel(graph)), 'MatMul')[0].input[1], 'd/kernel');
});

test('uint16, float16 and uint8 without an exact zero are stored as float32', async () => {
  // All-positive values: the converter does not nudge such a range, so min is not -zeroPoint * scale.
  const { entry, data } = quantizeTensor(Float32Array.from({ length: 4 * 3 }, () => 0.5 + random()), 'uint8');
  assert.ok(entry.min! > 0);
  const offset: ConstTensor = { name: 'd3/kernel', shape: [4, 3], values: Float32Array.from(data, (q) => q * entry.scale! + entry.min!), quantization: entry };
  const graph = chain(
    [null, 5],
    [
      dense('d1', 5, 6, { kernel: quantizedWeight('d1/kernel', [5, 6], 'uint16') }),
      dense('d2', 6, 4, { kernel: quantizedWeight('d2/kernel', [6, 4], 'float16') }),
      dense('d3', 4, 3, { kernel: offset }),
    ],
  );
  await assertMatchesTf(graph);
  const model = decodeModel(writeOnnxModel(graph));
  assert.is(nodesOf(model, 'DequantizeLinear').length, 0);
  for (const name of ['d1/kernel', 'd2/kernel', 'd3/kernel']) assert.is(model.graph.initializer.find((t) => t.name === name)?.dataType, DataType.FLOAT, name);
});

test('a uint8 entry whose values are not its codes’ dequantization (edited after loading) falls back to float32', async () => {
  const kernel = quantizedWeight('d/kernel', [5, 3], 'uint8');
  kernel.values[7] += kernel.quantization!.scale! / 3;
  const graph = chain([null, 5], [dense('d', 5, 3, { kernel })]);
  await assertMatchesTf(graph);
  assert.is(nodesOf(decodeModel(writeOnnxModel(graph)), 'DequantizeLinear').length, 0);
});

// ---- errors ----

function assertInputError(fn: () => unknown, ...parts: string[]): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, InputError);
    for (const part of parts) assert.ok((err as Error).message.includes(part), `"${(err as Error).message}" should mention ${part}`);
    return;
  }
  assert.unreachable('expected an InputError');
}

test('unsupported ops, activations and shapes: InputError naming the op and onnx', () => {
  const graph = (inputShape: (number | null)[], ops: unknown[]): ExportGraph => ({
    input: { name: 'input', shape: inputShape, dtype: 'float32' },
    output: { name: 'output', shape: inputShape, dtype: 'float32' },
    ops: ops as GraphOp[],
  });
  assertInputError(() => writeOnnxModel(graph([null, 4], [{ op: 'lstm', name: 'rnn_1' }])), 'rnn_1', 'lstm', 'onnx');
  assertInputError(() => writeOnnxModel(graph([null, 4], [{ op: 'activation', name: 'act_1', activation: 'gelu' }])), 'act_1', 'gelu', 'onnx');
  assertInputError(() => writeOnnxModel(graph([null, 4], [conv('conv_1', 4, 2)])), 'conv_1', 'rank-4', 'onnx');
  assertInputError(() => writeOnnxModel(graph([null, 4, 4, 1], [{ op: 'maxPool', name: 'pool_1', poolSize: [2, 2], strides: [2, 2], padding: 'causal' }])), 'pool_1', 'causal', 'onnx');
  assertInputError(() => writeOnnxModel(graph([null, 4], [{ op: 'reshape', name: 'r_1', shape: [-1, -1] }])), 'r_1', 'onnx');
  assertInputError(() => writeOnnxModel(graph([null, 8, 8, 2], [conv('c_1', 2, 2, { strides: [2, 2], dilations: [2, 2] })])), 'c_1', 'dilations', 'onnx');
  assertInputError(() => writeOnnxModel(graph([null, 4], [dense('d_1', 4, 2, { bias: weight('b', [3]) })])), 'd_1', 'bias', 'onnx');
  assertInputError(() => writeOnnxModel({ ...graph([null, 4], []), output: { name: 'input', shape: [null, 4], dtype: 'float32' } }), 'input', 'onnx');
});

test.run();
