import { InputError } from '../errors.js';
import type { QuantizationEntry } from '../compress/quantization.js';
import { graphConstants, type ConstTensor, type ExportGraph, type GraphActivation, type GraphOp, type GraphTensorSpec, type Pair } from './graph-ir.js';
import type { AttrValueObject, DataTypeName, GraphDefObject, NodeDefObject, TensorInfoObject, TensorShapeObject } from './tf-proto.js';

// ExportGraph -> frozen TensorFlow GraphDef, in protobuf's JSON form: what a tfjs graph model's
// model.json holds as modelTopology, and (with each Const's tensor_content filled in) the graph of a
// SavedModel. One GraphDef serves both, so every node carries the attrs TensorFlow's op registry
// requires, not only those tfjs-converter reads.
//
// Op choices, checked against tfjs-converter 4.22's op list and executors and TensorFlow's op defs:
// - conv2d with a bias and a linear/relu/relu6/elu activation is one _FusedConv2D (fused_ops
//   [BiasAdd] or [BiasAdd, Relu|Relu6|Elu]), and dense likewise one _FusedMatMul: the patterns
//   Grappler itself makes, which TensorFlow's CPU kernels run and which tfjs runs as one fused op.
//   Without a bias, or with sigmoid/tanh/softmax, it is the plain op (+ BiasAdd) + the activation
//   op: tfjs reads fused_ops as [extraOp, activation], so an activation fused without a BiasAdd
//   would be silently dropped, and TensorFlow's kernels accept no such pattern either.
// - depthwiseConv2d is always DepthwiseConv2dNative + BiasAdd + activation: the fused op tfjs
//   knows, FusedDepthwiseConv2dNative, is tensorflowjs_converter's own name and no op TensorFlow
//   registers, and TensorFlow's own _FusedDepthwiseConv2dNative is unknown to tfjs.
// - _FusedConv2D carries TArgs (its bias types): TensorFlow's op def declares `args: TArgs` since
//   2.11 and rejects a node without it; tfjs ignores the attr.
// - dense over a rank > 2 input (per pixel, as tf.layers.dense) is BatchMatMulV2 + BiasAdd:
//   MatMul and _FusedMatMul are rank-2 only.
//
// Naming: the Placeholder is the input's name, an Identity named as the output ends the graph (so
// the signature's tensors are "<name>:0"), and each Const is its ConstTensor's name. An op's own
// nodes are its name, then "<name>/BiasAdd", "<name>/Relu"...; where one of those is taken they
// become "<name>_1" and so on, since a GraphDef has one namespace for all of them.

/** The TensorFlow release whose op definitions the graph follows (MetaInfoDef.tensorflow_version). */
export const TF_VERSION = '2.12.0';
/** TF_GRAPH_DEF_VERSION of that release: the GraphDef's versions.producer. */
export const GRAPH_DEF_PRODUCER = 1394;

export interface GraphDefOptions {
  /**
   * Fuse conv2d/dense with their bias and activation into _FusedConv2D/_FusedMatMul (default true).
   * false gives only long-standing public ops (Conv2D, MatMul, BiasAdd, ...), which TensorFlow's
   * Grappler fuses by itself at load time; tfjs then runs them as separate ops.
   */
  fuse?: boolean;
}

/** A Const node's data, in node order: what the weights manifest / tensor_content stores. */
export interface GraphConstant {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  values: Float32Array | Int32Array;
  /** From the ConstTensor: a writer may store the codes instead of float32. */
  quantization?: QuantizationEntry;
}

export interface BuiltGraphDef {
  graphDef: GraphDefObject;
  constants: GraphConstant[];
}

/** The frozen GraphDef of `graph` (JSON form, Const nodes without tensor content). */
export function buildGraphDef(graph: ExportGraph, options: GraphDefOptions = {}): GraphDefObject {
  return buildGraphDefWithConstants(graph, options).graphDef;
}

/** The tfjs graph-model `signature` (the SavedModel's serving_default, less its method name). */
export function signatureFor(graph: ExportGraph): { inputs: Record<string, TensorInfoObject>; outputs: Record<string, TensorInfoObject> } {
  return {
    inputs: { [graph.input.name]: tensorInfo(graph.input) },
    outputs: { [graph.output.name]: tensorInfo(graph.output) },
  };
}

function tensorInfo(spec: GraphTensorSpec): TensorInfoObject {
  return { name: `${spec.name}:0`, dtype: 'DT_FLOAT', tensorShape: shapeProto(spec.shape) };
}

// ---- attr values ----

const base64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const str = (s: string): AttrValueObject => ({ s: base64(s) });
const strs = (xs: string[]): AttrValueObject => ({ list: xs.length ? { s: xs.map(base64) } : {} });
const ints = (xs: number[]): AttrValueObject => ({ list: xs.length ? { i: xs.map(String) } : {} });
const int = (n: number): AttrValueObject => ({ i: String(n) });
const bool = (b: boolean): AttrValueObject => ({ b });
const type = (t: DataTypeName): AttrValueObject => ({ type: t });
const T = type('DT_FLOAT');
const NHWC = str('NHWC');

/** Unknown (null) sizes are -1. (Zero sizes are rejected earlier: proto3 drops a 0 size and tfjs then reads NaN.) */
export function shapeProto(dims: readonly (number | null)[]): TensorShapeObject {
  return dims.length ? { dim: dims.map((d) => ({ size: String(d ?? -1) })) } : {};
}

const PADDING = { same: 'SAME', valid: 'VALID' } as const;
const nhwc = ([h, w]: Pair) => [1, h, w, 1];

/** Activations that _FusedConv2D/_FusedMatMul run after their BiasAdd, in TensorFlow and tfjs alike. */
const FUSABLE: Partial<Record<GraphActivation, string | null>> = { linear: null, relu: 'Relu', relu6: 'Relu6', elu: 'Elu' };
const ACTIVATION_OP: Record<GraphActivation, string | null> = {
  linear: null,
  relu: 'Relu',
  relu6: 'Relu6',
  elu: 'Elu',
  sigmoid: 'Sigmoid',
  tanh: 'Tanh',
  softmax: 'Softmax',
};

// TensorFlow's NodeDef name rule (node_def_util.cc): anything else fails ImportGraphDef.
const NODE_NAME = /^[A-Za-z0-9.][A-Za-z0-9_./>-]*$/;

function fail(message: string): never {
  throw new InputError(`cannot export to TensorFlow: ${message}`, { code: 'E_EXPORT' });
}

type Shape = (number | null)[];

/** The GraphDef and the data of its Const nodes. */
export function buildGraphDefWithConstants(graph: ExportGraph, options: GraphDefOptions = {}): BuiltGraphDef {
  const fuse = options.fuse ?? true;
  const nodes: NodeDefObject[] = [];
  const constants: GraphConstant[] = [];
  const owners = new Map<string, string>();
  const constOf = new Map<string, ConstTensor>();
  // Names others rely on (the signature's tensors, the ConstTensors' names) are kept exactly; the
  // nodes an op makes yield to them, since in a GraphDef node and tensor names are one namespace.
  const reserved = new Set([graph.input.name, graph.output.name, ...graphConstants(graph).map((c) => c.name)]);

  /** Adds a node under its exact name (`exact`) or, for an op's own nodes, the first free `name_N`. */
  const add = (node: NodeDefObject, owner: string, exact = false): string => {
    if (!NODE_NAME.test(node.name)) fail(`${owner}: "${node.name}" is not a valid TensorFlow node name (letters, digits, and _ . / - >, not starting with _ / - >)`);
    const previous = owners.get(node.name);
    if (exact && previous !== undefined) fail(`two nodes would be named "${node.name}" (${previous} and ${owner}); names must be unique`);
    let name = node.name;
    for (let k = 1; !exact && (owners.has(name) || reserved.has(name)); k++) name = `${node.name}_${k}`;
    owners.set(name, owner);
    nodes.push({ ...node, name });
    return name;
  };

  const addConstant = (c: GraphConstant, owner: string, exact: boolean): string => {
    const name = add(
      {
        name: c.name,
        op: 'Const',
        attr: {
          dtype: type(c.dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT'),
          value: { tensor: { dtype: c.dtype === 'int32' ? 'DT_INT32' : 'DT_FLOAT', tensorShape: shapeProto(c.shape) } },
        },
      },
      owner,
      exact,
    );
    constants.push({ ...c, name });
    return name;
  };

  /** A graph constant; the same ConstTensor object used twice becomes one node. */
  const useConst = (t: ConstTensor, owner: string, rank: number, what: string): string => {
    if (constOf.get(t.name) === t) return t.name;
    if (t.name === graph.input.name || t.name === graph.output.name) fail(`${owner}: ${what} "${t.name}" has the name of the graph ${t.name === graph.input.name ? 'input' : 'output'}`);
    if (t.shape.length !== rank) fail(`${owner}: ${what} "${t.name}" has shape [${t.shape}], expected rank ${rank}`);
    checkShape(t.shape, `${owner}: ${what} "${t.name}"`);
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.values.length !== size) fail(`${owner}: ${what} "${t.name}" has ${t.values.length} values for shape [${t.shape}] (${size})`);
    constOf.set(t.name, t);
    return addConstant({ name: t.name, shape: t.shape, dtype: 'float32', values: t.values, quantization: t.quantization }, `${owner}'s ${what}`, true);
  };

  const int32Const = (name: string, values: number[], owner: string) =>
    addConstant({ name, shape: [values.length], dtype: 'int32', values: Int32Array.from(values) }, owner, false);

  /** Appends the activation node (if any) after `x`; returns the op's output node. */
  const activation = (x: string, act: GraphActivation, op: GraphOp, asOpNode: boolean): string => {
    if (!(act in ACTIVATION_OP)) fail(`op "${op.name}": unsupported activation "${act}"`);
    const opType = ACTIVATION_OP[act];
    if (opType === null) return asOpNode ? add({ name: op.name, op: 'Identity', input: [x], attr: { T } }, `op "${op.name}"`) : x;
    return add({ name: asOpNode ? op.name : `${op.name}/${opType}`, op: opType, input: [x], attr: { T } }, `op "${op.name}"`);
  };

  checkSpec(graph.input, 'input');
  checkSpec(graph.output, 'output');
  if (graph.input.name === graph.output.name) fail(`the graph input and output are both named "${graph.input.name}"`);
  add(
    { name: graph.input.name, op: 'Placeholder', attr: { dtype: T, shape: { shape: shapeProto(graph.input.shape) } } },
    'the graph input',
    true,
  );

  let x = graph.input.name;
  let shape: Shape = [...graph.input.shape];
  for (const op of graph.ops) {
    const owner = `op "${op.name}"`;
    switch (op.op) {
      case 'conv2d':
      case 'depthwiseConv2d': {
        const depthwise = op.op === 'depthwiseConv2d';
        expectRank(shape, 4, op);
        const [kh, kw, inChannels, outOrMultiplier] = op.kernel.shape;
        const kernel = useConst(op.kernel, owner, 4, 'kernel');
        expectChannels(shape, inChannels, op, 'kernel');
        checkPair(op.strides, op, 'strides');
        checkPair(op.dilations, op, 'dilations');
        const outChannels = depthwise ? inChannels * outOrMultiplier : outOrMultiplier;
        const bias = op.bias && useConst(op.bias, owner, 1, 'bias');
        if (op.bias && op.bias.shape[0] !== outChannels) fail(`${owner}: bias has ${op.bias.shape[0]} values, expected ${outChannels}`);
        const attr: Record<string, AttrValueObject> = {
          T,
          strides: ints(nhwc(op.strides)),
          padding: str(padding(op.padding, op)),
          data_format: NHWC,
          dilations: ints(nhwc(op.dilations)),
          explicit_paddings: ints([]),
        };
        if (!depthwise) attr.use_cudnn_on_gpu = bool(true);
        const fused = !depthwise && fuse && bias !== undefined && op.activation in FUSABLE;
        if (fused) {
          const act = FUSABLE[op.activation];
          x = add(
            {
              name: op.name,
              op: '_FusedConv2D',
              input: [x, kernel, bias],
              attr: { ...attr, num_args: int(1), TArgs: { list: { type: ['DT_FLOAT'] } }, fused_ops: strs(act ? ['BiasAdd', act] : ['BiasAdd']) },
            },
            owner,
          );
        } else {
          x = add({ name: op.name, op: depthwise ? 'DepthwiseConv2dNative' : 'Conv2D', input: [x, kernel], attr }, owner);
          if (bias) x = add({ name: `${op.name}/BiasAdd`, op: 'BiasAdd', input: [x, bias], attr: { T, data_format: NHWC } }, owner);
          x = activation(x, op.activation, op, false);
        }
        shape = [
          shape[0],
          windowOut(shape[1], kh, op.strides[0], op.dilations[0], op.padding),
          windowOut(shape[2], kw, op.strides[1], op.dilations[1], op.padding),
          outChannels,
        ];
        break;
      }
      case 'dense': {
        if (shape.length < 2) fail(`${owner}: dense needs an input of rank 2 or more, got rank ${shape.length}`);
        const [inUnits, units] = op.kernel.shape;
        const kernel = useConst(op.kernel, owner, 2, 'kernel');
        expectChannels(shape, inUnits, op, 'kernel');
        const bias = op.bias && useConst(op.bias, owner, 1, 'bias');
        if (op.bias && op.bias.shape[0] !== units) fail(`${owner}: bias has ${op.bias.shape[0]} values, expected ${units}`);
        const attr = { T, transpose_a: bool(false), transpose_b: bool(false) };
        if (shape.length > 2) {
          // Over the last axis, as tf.layers.dense does: MatMul is rank-2 only, BatchMatMulV2
          // broadcasts the kernel over the leading axes (and neither runtime fuses it).
          x = add({ name: op.name, op: 'BatchMatMulV2', input: [x, kernel], attr: { T, adj_x: bool(false), adj_y: bool(false) } }, owner);
          if (bias) x = add({ name: `${op.name}/BiasAdd`, op: 'BiasAdd', input: [x, bias], attr: { T, data_format: NHWC } }, owner);
          x = activation(x, op.activation, op, false);
        } else if (fuse && bias !== undefined && op.activation in FUSABLE) {
          const act = FUSABLE[op.activation];
          x = add(
            { name: op.name, op: '_FusedMatMul', input: [x, kernel, bias], attr: { ...attr, num_args: int(1), fused_ops: strs(act ? ['BiasAdd', act] : ['BiasAdd']) } },
            owner,
          );
        } else {
          x = add({ name: op.name, op: 'MatMul', input: [x, kernel], attr }, owner);
          if (bias) x = add({ name: `${op.name}/BiasAdd`, op: 'BiasAdd', input: [x, bias], attr: { T, data_format: NHWC } }, owner);
          x = activation(x, op.activation, op, false);
        }
        shape = [...shape.slice(0, -1), units];
        break;
      }
      case 'maxPool':
      case 'avgPool': {
        expectRank(shape, 4, op);
        checkPair(op.poolSize, op, 'poolSize');
        checkPair(op.strides, op, 'strides');
        const attr = { T, ksize: ints(nhwc(op.poolSize)), strides: ints(nhwc(op.strides)), padding: str(padding(op.padding, op)), data_format: NHWC };
        x = add({ name: op.name, op: op.op === 'maxPool' ? 'MaxPool' : 'AvgPool', input: [x], attr }, owner);
        shape = [
          shape[0],
          windowOut(shape[1], op.poolSize[0], op.strides[0], 1, op.padding),
          windowOut(shape[2], op.poolSize[1], op.strides[1], 1, op.padding),
          shape[3],
        ];
        break;
      }
      case 'globalAvgPool':
      case 'globalMaxPool': {
        expectRank(shape, 4, op);
        const axes = int32Const(`${op.name}/reduction_indices`, [1, 2], owner);
        const attr = { T, Tidx: type('DT_INT32'), keep_dims: bool(false) };
        x = add({ name: op.name, op: op.op === 'globalAvgPool' ? 'Mean' : 'Max', input: [x, axes], attr }, owner);
        shape = [shape[0], shape[3]];
        break;
      }
      case 'reshape': {
        checkShape(op.shape, `${owner}: target shape`);
        const target = op.shape.reduce((a, b) => a * b, 1);
        const known = shape.slice(1);
        if (known.every((d) => d !== null) && known.reduce<number>((a, b) => a * (b as number), 1) !== target) {
          fail(`${owner}: cannot reshape [${known}] (per example) to [${op.shape}]`);
        }
        const target1 = int32Const(`${op.name}/shape`, [-1, ...op.shape], owner);
        x = add({ name: op.name, op: 'Reshape', input: [x, target1], attr: { T, Tshape: type('DT_INT32') } }, owner);
        shape = [shape[0], ...op.shape];
        break;
      }
      case 'scaleShift': {
        const scale = useConst(op.scale, owner, 1, 'scale');
        const shift = useConst(op.shift, owner, 1, 'shift');
        expectChannels(shape, op.scale.shape[0], op, 'scale');
        expectChannels(shape, op.shift.shape[0], op, 'shift');
        x = add({ name: op.name, op: 'Mul', input: [x, scale], attr: { T } }, owner);
        x = add({ name: `${op.name}/BiasAdd`, op: 'BiasAdd', input: [x, shift], attr: { T, data_format: NHWC } }, owner);
        x = activation(x, op.activation, op, false);
        break;
      }
      case 'activation':
        x = activation(x, op.activation, op, true);
        break;
      default:
        fail(`unsupported op ${JSON.stringify((op as { op?: unknown }).op)} ("${(op as { name?: unknown }).name}")`);
    }
  }

  if (shape.length !== graph.output.shape.length || shape.some((d, i) => d !== null && graph.output.shape[i] !== null && d !== graph.output.shape[i])) {
    fail(`the ops compute shape [${shape.map((d) => d ?? 'null')}] but the output "${graph.output.name}" is declared [${graph.output.shape.map((d) => d ?? 'null')}]`);
  }
  // The output tensor is "<output name>:0" whatever the last op was.
  add({ name: graph.output.name, op: 'Identity', input: [x], attr: { T } }, 'the graph output', true);

  return { graphDef: { node: nodes, library: {}, versions: { producer: GRAPH_DEF_PRODUCER } }, constants };
}

function checkSpec(spec: GraphTensorSpec, what: string): void {
  if (spec.dtype !== 'float32') fail(`the ${what} "${spec.name}" is ${spec.dtype}; only float32 is supported`);
  if (spec.shape.length === 0) fail(`the ${what} "${spec.name}" has no batch dimension`);
  spec.shape.forEach((d) => {
    if (d !== null && !(Number.isInteger(d) && d > 0)) fail(`the ${what} "${spec.name}" has shape [${spec.shape}]; sizes must be positive integers or null`);
  });
}

function checkShape(shape: number[], what: string): void {
  if (!shape.every((d) => Number.isInteger(d) && d > 0)) fail(`${what} has shape [${shape}]; sizes must be positive integers`);
}

function checkPair(pair: Pair, op: GraphOp, what: string): void {
  if (pair.length !== 2 || !pair.every((v) => Number.isInteger(v) && v > 0)) fail(`op "${op.name}": ${what} [${pair}] must be two positive integers`);
}

function padding(p: string, op: GraphOp): string {
  if (p !== 'same' && p !== 'valid') fail(`op "${op.name}": unsupported padding "${p}"`);
  return PADDING[p];
}

function expectRank(shape: Shape, rank: number, op: GraphOp): void {
  if (shape.length !== rank) fail(`op "${op.name}" (${op.op}) needs a rank-${rank} NHWC input, got rank ${shape.length}`);
}

function expectChannels(shape: Shape, channels: number, op: GraphOp, what: string): void {
  const last = shape[shape.length - 1];
  if (last !== null && last !== channels) fail(`op "${op.name}": its ${what} expects ${channels} input channels/features, the input has ${last}`);
}

/** Output size of a conv/pool window along one axis (TensorFlow's SAME/VALID rules). */
function windowOut(size: number | null, kernel: number, stride: number, dilation: number, pad: string): number | null {
  if (size === null) return null;
  const effective = (kernel - 1) * dilation + 1;
  const out = pad === 'same' ? Math.ceil(size / stride) : Math.ceil((size - effective + 1) / stride);
  if (out < 1) fail(`a ${kernel}x window (dilation ${dilation}) does not fit an input of size ${size} with VALID padding`);
  return out;
}
