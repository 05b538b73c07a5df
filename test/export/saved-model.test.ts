import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { buildGraphDef, TF_VERSION } from '../../src/export/graph-def.js';
import { graphConstants } from '../../src/export/graph-ir.js';
import { decodeSavedModel, encodeSavedModel, tensorValues, writeSavedModel } from '../../src/export/saved-model.js';
import type { GraphDefObject, TensorObject } from '../../src/export/tf-proto.js';
import { tfjsGraphArtifacts } from '../../src/export/tfjs-graph.js';
import { removeTempDirs, tempDir } from '../helpers.js';
import { ALL_GRAPHS, convGraph, quantizedGraph } from './tf-graphs.js';

test.after(removeTempDirs);

/** The GraphDef without tensor contents: what model.json's modelTopology holds. */
function stripContents(g: GraphDefObject): GraphDefObject {
  return {
    ...g,
    node: g.node.map((n) => {
      if (n.op !== 'Const') return n;
      const { tensorContent: _, ...tensor } = n.attr!.value.tensor!;
      return { ...n, attr: { ...n.attr, value: { tensor } } };
    }),
  };
}

for (const [name, make] of Object.entries(ALL_GRAPHS)) {
  test(`${name} graph: the SavedModel's GraphDef is the tfjs model's, with every constant's float32/int32 values as tensor_content`, () => {
    const graph = make();
    const saved = decodeSavedModel(encodeSavedModel(graph));
    const graphDef = saved.metaGraphs![0].graphDef!;
    assert.equal(stripContents(graphDef), tfjsGraphArtifacts(graph).modelJson.modelTopology);

    const consts = new Map(graphDef.node.filter((n) => n.op === 'Const').map((n) => [n.name, n.attr!.value.tensor!]));
    for (const c of graphConstants(graph)) {
      const tensor = consts.get(c.name);
      assert.ok(tensor, `Const ${c.name}`);
      assert.is(tensor.dtype, 'DT_FLOAT');
      assert.equal(tensor.tensorShape.dim?.map((d) => Number(d.size)), c.shape);
      // Quantized constants too: their dequantized values, what tfjs computes with.
      assert.equal(Array.from(tensorValues(tensor)), Array.from(c.values), c.name);
      consts.delete(c.name);
    }
    // The rest are the writer's int32 axes and shapes.
    for (const [constName, tensor] of consts) {
      assert.is(tensor.dtype, 'DT_INT32', constName);
      const values = Array.from(tensorValues(tensor));
      if (constName.endsWith('/reduction_indices')) assert.equal(values, [1, 2]);
      else assert.is(values[0], -1, constName);
    }
  });
}

test('structure: schema version 1, one "serve" meta graph, serving_default predict signature', () => {
  const saved = decodeSavedModel(encodeSavedModel(convGraph()));
  assert.is(saved.savedModelSchemaVersion, '1');
  assert.is(saved.metaGraphs!.length, 1);
  const meta = saved.metaGraphs![0];
  assert.equal(meta.metaInfoDef, { tags: ['serve'], tensorflowVersion: TF_VERSION });
  assert.equal(Object.keys(meta.signatureDef!), ['serving_default']);
  assert.equal(meta.signatureDef!.serving_default, {
    inputs: { input: { name: 'input:0', dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, { size: '16' }, { size: '16' }, { size: '3' }] } } },
    outputs: { probabilities: { name: 'probabilities:0', dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '-1' }, { size: '5' }] } } },
    methodName: 'tensorflow/serving/predict',
  });
  // The signature's tensors are in the graph: the Placeholder and the final Identity.
  const nodes = meta.graphDef!.node;
  assert.is(nodes.find((n) => n.name === 'input')!.op, 'Placeholder');
  assert.is(nodes.find((n) => n.name === 'probabilities')!.op, 'Identity');
  assert.equal(meta.graphDef!.versions, buildGraphDef(convGraph()).versions);
  assert.equal(decodeSavedModel(encodeSavedModel(convGraph(), { tensorflowVersion: '2.15.0' })).metaGraphs![0].metaInfoDef!.tensorflowVersion, '2.15.0');
});

// ---- the wire format, read without our schema ----
// Decoding with our own message definitions would round-trip any field numbering; this reads the
// bytes with the numbers from TensorFlow's .proto files, so a wrong number in tf-proto.ts fails.

type WireField = { no: number; value: bigint | Uint8Array };

function readVarint(b: Uint8Array, at: { i: number }): bigint {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = b[at.i++];
    result |= BigInt(byte & 0x7f) << shift;
    if (!(byte & 0x80)) return result;
    shift += 7n;
  }
}

function wireFields(b: Uint8Array): WireField[] {
  const out: WireField[] = [];
  const at = { i: 0 };
  while (at.i < b.length) {
    const key = Number(readVarint(b, at));
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ no, value: readVarint(b, at) });
    else if (wire === 2) {
      const len = Number(readVarint(b, at));
      out.push({ no, value: b.subarray(at.i, at.i + len) });
      at.i += len;
    } else if (wire === 5) at.i += 4;
    else if (wire === 1) at.i += 8;
    else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

const sub = (fields: WireField[], no: number) => fields.filter((f) => f.no === no).map((f) => wireFields(f.value as Uint8Array));
const text = (fields: WireField[], no: number) => fields.filter((f) => f.no === no).map((f) => Buffer.from(f.value as Uint8Array).toString('utf8'));
const varint = (fields: WireField[], no: number) => fields.filter((f) => f.no === no).map((f) => f.value as bigint);
/** A proto map<string, V> field: entries are messages {1: key, 2: value}. */
const mapOf = (fields: WireField[], no: number) => new Map(sub(fields, no).map((e) => [text(e, 1)[0], e.find((f) => f.no === 2)!.value as Uint8Array]));

test('wire format: field numbers are TensorFlow\'s', () => {
  const graph = quantizedGraph();
  const top = wireFields(encodeSavedModel(graph));
  assert.equal(varint(top, 1), [1n]); // SavedModel.saved_model_schema_version = 1
  const [meta] = sub(top, 2); // SavedModel.meta_graphs = 2
  const [info] = sub(meta, 1); // MetaGraphDef.meta_info_def = 1
  assert.equal(text(info, 4), ['serve']); // MetaInfoDef.tags = 4
  assert.equal(text(info, 5), [TF_VERSION]); // MetaInfoDef.tensorflow_version = 5

  const signature = wireFields(mapOf(meta, 5).get('serving_default')!); // MetaGraphDef.signature_def = 5
  assert.equal(text(signature, 3), ['tensorflow/serving/predict']); // SignatureDef.method_name = 3
  const input = wireFields(mapOf(signature, 1).get('input')!); // SignatureDef.inputs = 1
  assert.equal(text(input, 1), ['input:0']); // TensorInfo.name = 1
  assert.equal(varint(input, 2), [1n]); // TensorInfo.dtype = 2, DT_FLOAT = 1
  const dims = sub(sub(input, 3)[0], 2).map((d) => BigInt.asIntN(64, varint(d, 1)[0])); // tensor_shape = 3, dim = 2, size = 1
  assert.equal(dims, [-1n, 6n, 6n, 2n]);
  assert.equal([...mapOf(signature, 2).keys()], ['output']); // SignatureDef.outputs = 2

  const [graphDef] = sub(meta, 2); // MetaGraphDef.graph_def = 2
  assert.equal(sub(graphDef, 4).map((v) => varint(v, 1)), [[1394n]]); // GraphDef.versions = 4, producer = 1
  const nodes = sub(graphDef, 1); // GraphDef.node = 1
  const node = (name: string) => nodes.find((n) => text(n, 1)[0] === name)!; // NodeDef.name = 1
  const conv = node('conv');
  assert.equal(text(conv, 2), ['_FusedConv2D']); // NodeDef.op = 2
  assert.equal(text(conv, 3), ['input', 'conv/kernel', 'conv/bias']); // NodeDef.input = 3
  const attr = new Map([...mapOf(conv, 5)].map(([k, v]) => [k, wireFields(v)])); // NodeDef.attr = 5
  assert.equal(text(attr.get('padding')!, 2), ['SAME']); // AttrValue.s = 2
  assert.equal(varint(attr.get('T')!, 6), [1n]); // AttrValue.type = 6
  assert.equal(varint(attr.get('num_args')!, 3), [1n]); // AttrValue.i = 3
  const [strides] = sub(attr.get('strides')!, 1); // AttrValue.list = 1
  const packed = strides.find((f) => f.no === 3)!.value as Uint8Array; // ListValue.i = 3, packed
  assert.equal([...packed], [1, 1, 1, 1]);
  assert.equal(text(sub(attr.get('fused_ops')!, 1)[0], 2), ['BiasAdd', 'Relu']); // ListValue.s = 2

  // The kernel Const: value = tensor (8) with dtype (1), tensor_shape (2) and tensor_content (4).
  const kernelAttr = new Map([...mapOf(node('conv/kernel'), 5)].map(([k, v]) => [k, wireFields(v)]));
  assert.equal(varint(kernelAttr.get('dtype')!, 6), [1n]);
  const [tensor] = sub(kernelAttr.get('value')!, 8);
  assert.equal(varint(tensor, 1), [1n]);
  assert.equal(sub(sub(tensor, 2)[0], 2).map((d) => varint(d, 1)[0]), [3n, 3n, 2n, 4n]);
  const content = tensor.find((f) => f.no === 4)!.value as Uint8Array;
  const kernel = graphConstants(graph)[0];
  assert.equal(Array.from(new Float32Array(new Uint8Array(content).buffer)), Array.from(kernel.values));
  // transpose_a = false on the dense: a oneof member is written even when false (AttrValue.b = 5).
  const dense = new Map([...mapOf(node('dense'), 5)].map(([k, v]) => [k, wireFields(v)]));
  assert.equal(varint(dense.get('transpose_a')!, 5), [0n]);
});

test('writeSavedModel writes saved_model.pb and an empty variables/', async () => {
  const dir = await tempDir();
  const { files } = await writeSavedModel(convGraph(), dir);
  assert.equal(files, ['saved_model.pb']);
  assert.equal((await readdir(dir)).sort(), ['saved_model.pb', 'variables']);
  assert.ok((await stat(join(dir, 'variables'))).isDirectory());
  assert.equal(await readdir(join(dir, 'variables')), []);
});

test('tensorValues reads base64 or bytes content, and refuses other dtypes', () => {
  const t: TensorObject = { dtype: 'DT_INT32', tensorShape: { dim: [{ size: '2' }] }, tensorContent: Buffer.from(new Int32Array([-1, 7]).buffer).toString('base64') };
  assert.equal(Array.from(tensorValues(t)), [-1, 7]);
  assert.equal(Array.from(tensorValues({ ...t, dtype: 'DT_FLOAT', tensorContent: new Uint8Array(new Float32Array([0.5]).buffer) })), [0.5]);
  assert.throws(() => tensorValues({ ...t, dtype: 'DT_HALF' }), /DT_HALF is not supported/);
});

test.run();
