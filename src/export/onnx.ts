import { InputError } from '../errors.js';
import type { ConstTensor, ExportGraph, GraphActivation, GraphOp, Padding } from './graph-ir.js';
import {
  AttributeType,
  DataType,
  encodeModel,
  type OnnxAttribute,
  type OnnxDimension,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from './onnx-proto.js';

// ExportGraph -> ONNX ModelProto.
//
// The graph keeps TensorFlow's NHWC activations at its input and output (the signature a tfjs user
// knows), but ONNX's Conv and pooling ops are NCHW only. The writer tracks the layout of the current
// value and transposes only where it must change: into NCHW before the first conv/pool of a run,
// back to NHWC before anything whose meaning depends on the flat element order (reshape, a dense on
// a rank-4 value) and at the graph output. Elementwise ops (activations, scaleShift with its
// constants shaped [C,1,1]) and softmax (over axis 1, the channel axis) run in NCHW unchanged.
//
// Constants are transposed to ONNX's layouts at export. A uint8-quantized constant is stored as its
// codes plus their dequantization (DequantizeLinear; for dense kernels Cast/Sub/Mul, see
// constant()), so the file stays ~4x smaller while the values are the float32 that tfjs computes
// with. uint16 (DequantizeLinear takes 16-bit input only from opset 21) and float16 constants are
// stored dequantized, as float32.

export const ONNX_IR_VERSION = 8;
export const ONNX_OPSET = 13;
export const ONNX_PRODUCER_NAME = 'tfjs-pipeline';

export interface OnnxWriteOptions {
  /** ModelProto.producer_version, e.g. the package version. */
  producerVersion?: string;
  /** ModelProto.doc_string. */
  docString?: string;
}

/** The bytes of an .onnx file computing `graph` (opset 13), runnable by onnxruntime. */
export function writeOnnxModel(graph: ExportGraph, options: OnnxWriteOptions = {}): Uint8Array {
  const writer = new OnnxGraphWriter(graph);
  for (const op of graph.ops) writer.write(op);
  const { nodes, initializers } = writer.finish();
  return encodeModel({
    irVersion: ONNX_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: ONNX_PRODUCER_NAME,
    ...(options.producerVersion !== undefined ? { producerVersion: options.producerVersion } : {}),
    ...(options.docString !== undefined ? { docString: options.docString } : {}),
    graph: {
      name: 'main',
      node: nodes,
      initializer: initializers,
      input: [valueInfo(graph.input.name, graph.input.shape)],
      output: [valueInfo(graph.output.name, graph.output.shape)],
    },
  });
}

/** A float32 tensor signature; the leading (batch) dimension, when unknown, is the symbolic "batch". */
function valueInfo(name: string, shape: (number | null)[]): OnnxValueInfo {
  const dim = shape.map((d, i): OnnxDimension => (d !== null ? { dimValue: d } : i === 0 ? { dimParam: 'batch' } : {}));
  return { name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim } } } };
}

const NCHW_FROM_NHWC = [0, 3, 1, 2];
const NHWC_FROM_NCHW = [0, 2, 3, 1];

/** How far (in quantization steps) a stored min may sit from -zeroPoint * scale: float32 rounding of min and scale. */
const ZERO_POINT_TOLERANCE = 1e-3;
/** How far (in steps) a value may sit from its nearest code and still count as that code's dequantization. */
const CODE_TOLERANCE = 1e-2;

class OnnxGraphWriter {
  private readonly nodes: OnnxNode[] = [];
  private readonly initializers: OnnxTensor[] = [];
  private readonly valueNames = new Set<string>();
  private readonly nodeNames = new Set<string>();
  private readonly shared = new Map<string, string>();
  /** The current value: its name, its rank, and whether it is (rank-4) NCHW rather than TF's layout. */
  private value: string;
  private rank: number;
  private nchw = false;

  constructor(private readonly graph: ExportGraph) {
    if (graph.input.name === graph.output.name) {
      throw new InputError(`onnx export: the graph input and output are both named "${graph.input.name}"; ONNX needs distinct names`);
    }
    if (graph.input.dtype !== 'float32' || graph.output.dtype !== 'float32') {
      throw new InputError(`onnx export: only float32 graph inputs and outputs are supported (got ${graph.input.dtype} -> ${graph.output.dtype})`);
    }
    // Reserved first, so that no internal value takes a signature name.
    this.valueNames.add(graph.input.name);
    this.valueNames.add(graph.output.name);
    this.value = graph.input.name;
    this.rank = graph.input.shape.length;
  }

  write(op: GraphOp): void {
    switch (op.op) {
      case 'conv2d':
      case 'depthwiseConv2d':
        return this.conv(op);
      case 'dense':
        return this.dense(op);
      case 'maxPool':
      case 'avgPool':
        return this.pool(op);
      case 'globalAvgPool':
      case 'globalMaxPool':
        return this.globalPool(op);
      case 'reshape':
        return this.reshape(op);
      case 'scaleShift':
        return this.scaleShift(op);
      case 'activation':
        this.value = this.activation(op, this.value, op.activation);
        return;
      default: {
        const unknown = op as { op?: unknown; name?: unknown };
        throw new InputError(`onnx export: op "${String(unknown.name)}" has kind "${String(unknown.op)}", which the onnx writer does not support`);
      }
    }
  }

  /** The nodes and initializers, with the last value renamed to the graph output. */
  finish(): { nodes: OnnxNode[]; initializers: OnnxTensor[] } {
    this.toNhwc('output');
    const output = this.graph.output.name;
    if (this.value === this.graph.input.name) {
      this.nodes.push({ name: this.nodeName('output'), opType: 'Identity', input: [this.value], output: [output] });
    } else {
      // Every value but the input is the single output of the node that made it.
      const producer = this.nodes.find((n) => n.output[0] === this.value)!;
      producer.output[0] = output;
    }
    const outRank = this.graph.output.shape.length;
    if (outRank !== this.rank) {
      throw new InputError(`onnx export: the ops produce a rank-${this.rank} value but the output "${output}" is declared with rank ${outRank}`);
    }
    return { nodes: this.nodes, initializers: this.initializers };
  }

  // ---- ops ----

  private conv(op: Extract<GraphOp, { op: 'conv2d' | 'depthwiseConv2d' }>): void {
    this.requireRank(op, 4);
    const [kh, kw, inC, k3] = shapeOf(op, op.kernel, 4);
    const depthwise = op.op === 'depthwiseConv2d';
    // TF's depthwise output channel c * multiplier + m is row-major order over [in, multiplier], so
    // transposing to [in, multiplier, kh, kw] and reading it as [in*mult, 1, kh, kw] keeps it.
    const outC = depthwise ? inC * k3 : k3;
    const weight = depthwise
      ? this.constant(op, op.kernel, [2, 3, 0, 1], [outC, 1, kh, kw])
      : this.constant(op, op.kernel, [3, 2, 0, 1], [outC, inC, kh, kw]);
    const strides = pair(op, 'strides', op.strides);
    const dilations = pair(op, 'dilations', op.dilations);
    const inputs = [this.toNchw(op.name), weight];
    if (op.bias) {
      if (op.bias.values.length !== outC) throw opError(op, `bias "${op.bias.name}" has ${op.bias.values.length} values, expected ${outC} (one per output channel)`);
      inputs.push(this.constant(op, op.bias, null, [outC]));
    }
    const out = this.node(op, 'Conv', inputs, [
      ints('kernel_shape', [kh, kw]),
      ints('strides', strides),
      ints('dilations', dilations),
      int('group', depthwise ? inC : 1),
      paddingAttribute(op, op.padding, [kh, kw], strides, dilations),
    ], op.activation === 'linear');
    this.value = this.activation(op, out, op.activation);
  }

  private dense(op: Extract<GraphOp, { op: 'dense' }>): void {
    if (this.rank < 2) throw opError(op, `needs an input of rank 2 or more, got rank ${this.rank}`);
    const [inUnits, units] = shapeOf(op, op.kernel, 2);
    const kernel = this.constant(op, op.kernel, null, [inUnits, units], 'arithmetic');
    if (op.bias && op.bias.values.length !== units) throw opError(op, `bias "${op.bias.name}" has ${op.bias.values.length} values, expected ${units}`);
    const bias = op.bias ? this.constant(op, op.bias, null, [units]) : undefined;
    const last = op.activation === 'linear';
    let out: string;
    if (this.rank === 2) {
      out = this.node(op, 'Gemm', [this.value, kernel, ...(bias ? [bias] : [])], [], last);
    } else {
      // Like tf.layers.dense on a rank > 2 input: over the last axis, which must be TF's channel axis.
      const product = this.node(op, 'MatMul', [this.toNhwc(op.name), kernel], [], last && !bias, 'matmul');
      out = bias ? this.node(op, 'Add', [product, bias], [], last, 'bias') : product;
    }
    this.value = this.activation(op, out, op.activation);
  }

  private pool(op: Extract<GraphOp, { op: 'maxPool' | 'avgPool' }>): void {
    this.requireRank(op, 4);
    const poolSize = pair(op, 'poolSize', op.poolSize);
    const strides = pair(op, 'strides', op.strides);
    const attributes = [ints('kernel_shape', poolSize), ints('strides', strides), paddingAttribute(op, op.padding, poolSize, strides, [1, 1])];
    // TF averages over the window's in-bounds elements only.
    if (op.op === 'avgPool') attributes.push(int('count_include_pad', 0));
    this.value = this.node(op, op.op === 'maxPool' ? 'MaxPool' : 'AveragePool', [this.toNchw(op.name)], attributes, true);
  }

  private globalPool(op: Extract<GraphOp, { op: 'globalAvgPool' | 'globalMaxPool' }>): void {
    this.requireRank(op, 4);
    if (this.nchw) {
      const pooled = this.node(op, op.op === 'globalAvgPool' ? 'GlobalAveragePool' : 'GlobalMaxPool', [this.value], [], false, 'pool');
      this.value = this.node(op, 'Flatten', [pooled], [int('axis', 1)], true);
    } else {
      // Still NHWC (no conv before it): reducing H and W directly saves two transposes.
      const reduce = op.op === 'globalAvgPool' ? 'ReduceMean' : 'ReduceMax';
      this.value = this.node(op, reduce, [this.value], [ints('axes', [1, 2]), int('keepdims', 0)], true);
    }
    this.rank = 2;
    this.nchw = false;
  }

  private reshape(op: Extract<GraphOp, { op: 'reshape' }>): void {
    const dims = op.shape;
    if (dims.length === 0 || dims.some((d) => !Number.isInteger(d) || (d <= 0 && d !== -1)) || dims.filter((d) => d === -1).length > 1) {
      throw opError(op, `has target shape [${dims.join(', ')}]; expected positive sizes with at most one -1`);
    }
    // ONNX Reshape reads 0 as "copy this input dimension": the batch, when the shape already holds the one -1 allowed.
    const target = [dims.includes(-1) ? 0 : -1, ...dims];
    const shape = this.initializer(`${op.name}/shape`, DataType.INT64, [target.length], int64Bytes(target));
    this.value = this.node(op, 'Reshape', [this.toNhwc(op.name), shape], [], true);
    this.rank = target.length;
  }

  private scaleShift(op: Extract<GraphOp, { op: 'scaleShift' }>): void {
    const channels = op.scale.values.length;
    if (op.shift.values.length !== channels) throw opError(op, `has ${channels} scales but ${op.shift.values.length} shifts`);
    // Broadcasting aligns trailing axes: [C] is TF's last axis, [C, 1, 1] is NCHW's axis 1.
    const shape = this.nchw ? [channels, 1, 1] : [channels];
    const scale = this.constant(op, op.scale, null, shape);
    const shift = this.constant(op, op.shift, null, shape);
    const scaled = this.node(op, 'Mul', [this.value, scale], [], false, 'scale');
    const out = this.node(op, 'Add', [scaled, shift], [], op.activation === 'linear');
    this.value = this.activation(op, out, op.activation);
  }

  /** Applies `activation` to `x` and returns the result's name (x itself for linear). */
  private activation(op: GraphOp, x: string, activation: GraphActivation): string {
    switch (activation) {
      case 'linear':
        return x;
      case 'relu':
        return this.node(op, 'Relu', [x], [], true);
      case 'relu6':
        // Opset 11+ Clip takes its bounds as (scalar) inputs, no longer as attributes.
        return this.node(op, 'Clip', [x, this.scalar('relu6/min', 0), this.scalar('relu6/max', 6)], [], true);
      case 'elu':
        return this.node(op, 'Elu', [x], [float('alpha', 1)], true);
      case 'sigmoid':
        return this.node(op, 'Sigmoid', [x], [], true);
      case 'tanh':
        return this.node(op, 'Tanh', [x], [], true);
      case 'softmax':
        // TF's softmax is over the channel axis: the last in NHWC, axis 1 in NCHW.
        return this.node(op, 'Softmax', [x], [int('axis', this.nchw ? 1 : -1)], true);
      default:
        throw opError(op, `has activation "${String(activation)}", which the onnx writer does not support`);
    }
  }

  // ---- layout ----

  private requireRank(op: GraphOp, rank: number): void {
    if (this.rank !== rank) throw opError(op, `needs a rank-${rank} (NHWC) input, got rank ${this.rank}`);
  }

  private toNchw(owner: string): string {
    if (!this.nchw) {
      this.value = this.transpose(owner, 'to_nchw', NCHW_FROM_NHWC);
      this.nchw = true;
    }
    return this.value;
  }

  private toNhwc(owner: string): string {
    if (this.nchw) {
      this.value = this.transpose(owner, 'to_nhwc', NHWC_FROM_NCHW);
      this.nchw = false;
    }
    return this.value;
  }

  private transpose(owner: string, suffix: string, perm: number[]): string {
    const name = `${owner}/${suffix}`;
    const out = this.valueName(name);
    this.nodes.push({ name: this.nodeName(name), opType: 'Transpose', input: [this.value], output: [out], attribute: [ints('perm', perm)] });
    return out;
  }

  // ---- nodes and constants ----

  /**
   * Adds one node of `op` and returns its output's name: op.name for the op's last node, so that
   * the value keeps the layer's name, else op.name/suffix (suffix defaulting to the ONNX op type).
   */
  private node(op: GraphOp, opType: string, input: string[], attribute: OnnxAttribute[], last: boolean, suffix?: string): string {
    const base = last ? op.name : `${op.name}/${suffix ?? opType}`;
    const output = this.valueName(base);
    this.nodes.push({ name: this.nodeName(base), opType, input, output: [output], ...(attribute.length ? { attribute } : {}) });
    return output;
  }

  /**
   * Adds `t` transposed by `perm` (over t.shape) and read as `shape`; returns the value name to
   * feed the node. A uint8-quantized tensor becomes its codes (transposed the same way: exact)
   * followed by their dequantization: DequantizeLinear, or for `arithmetic` the same
   * (float(q) - zeroPoint) * scale spelled Cast, Sub, Mul.
   *
   * `arithmetic` is for matmul weights. onnxruntime (at its default optimization level) rewrites
   * DequantizeLinear -> MatMul/Gemm on a 2-D weight into its MatMulNBits kernel, which by default
   * (session.qdq_matmulnbits_accuracy_level 4) also quantizes the activations to int8: outputs
   * drift ~1e-2 from what tfjs computes. Cast/Sub/Mul on constants matches no such pattern and
   * is constant-folded when the session loads, leaving the exact float weight.
   */
  private constant(op: GraphOp, t: ConstTensor, perm: number[] | null, shape: number[], dequantize: 'linear' | 'arithmetic' = 'linear'): string {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.values.length !== size) throw opError(op, `constant "${t.name}" has ${t.values.length} values for shape [${t.shape.join(', ')}]`);
    if (shape.reduce((a, b) => a * b, 1) !== size) throw opError(op, `constant "${t.name}" of shape [${t.shape.join(', ')}] cannot be used as [${shape.join(', ')}]`);
    const codes = t.quantization?.dtype === 'uint8' ? uint8Codes(t) : undefined;
    if (!codes) {
      const values = perm ? transpose(t.values, t.shape, perm) : t.values;
      return this.initializer(t.name, DataType.FLOAT, shape, float32Bytes(values));
    }
    const data = perm ? transpose(codes.codes, t.shape, perm) : codes.codes;
    const quantized = this.initializer(`${t.name}/quantized`, DataType.UINT8, shape, data);
    const scale = this.initializer(`${t.name}/scale`, DataType.FLOAT, [], float32Bytes([codes.scale]));
    if (dequantize === 'linear') {
      const zeroPoint = this.initializer(`${t.name}/zero_point`, DataType.UINT8, [], Uint8Array.of(codes.zeroPoint));
      return this.constantNode(`${t.name}/dequantize`, 'DequantizeLinear', [quantized, scale, zeroPoint], t.name);
    }
    const zeroPoint = this.initializer(`${t.name}/zero_point`, DataType.FLOAT, [], float32Bytes([codes.zeroPoint]));
    const float = this.constantNode(`${t.name}/cast`, 'Cast', [quantized], `${t.name}/float`, [int('to', DataType.FLOAT)]);
    const centred = this.constantNode(`${t.name}/sub`, 'Sub', [float, zeroPoint], `${t.name}/centred`);
    return this.constantNode(`${t.name}/mul`, 'Mul', [centred, scale], t.name);
  }

  private constantNode(name: string, opType: string, input: string[], output: string, attribute?: OnnxAttribute[]): string {
    const out = this.valueName(output);
    this.nodes.push({ name: this.nodeName(name), opType, input, output: [out], ...(attribute ? { attribute } : {}) });
    return out;
  }

  /** A float scalar shared by every node that needs it (Clip's bounds). */
  private scalar(key: string, value: number): string {
    let name = this.shared.get(key);
    if (!name) {
      name = this.initializer(key, DataType.FLOAT, [], float32Bytes([value]));
      this.shared.set(key, name);
    }
    return name;
  }

  private initializer(base: string, dataType: DataType, dims: number[], rawData: Uint8Array): string {
    const name = this.valueName(base);
    this.initializers.push({ name, dataType, dims, rawData });
    return name;
  }

  private valueName(base: string): string {
    return unique(this.valueNames, base);
  }

  private nodeName(base: string): string {
    return unique(this.nodeNames, base);
  }
}

function unique(taken: Set<string>, base: string): string {
  let name = base;
  for (let i = 1; taken.has(name); i++) name = `${base}_${i}`;
  taken.add(name);
  return name;
}

function opError(op: GraphOp, message: string): InputError {
  return new InputError(`onnx export: op "${op.name}" (${op.op}) ${message}`);
}

function shapeOf(op: GraphOp, t: ConstTensor, rank: number): number[] {
  if (t.shape.length !== rank) throw opError(op, `needs a rank-${rank} kernel, but "${t.name}" has shape [${t.shape.join(', ')}]`);
  return t.shape;
}

function pair(op: GraphOp, what: string, p: readonly number[]): number[] {
  if (p.length !== 2 || !p.every((v) => Number.isInteger(v) && v >= 1)) throw opError(op, `has ${what} [${p.join(', ')}]; expected two positive integers`);
  return [...p];
}

/** TF's padding as Conv/pool attributes. */
function paddingAttribute(op: GraphOp, padding: Padding, kernel: number[], strides: number[], dilations: number[]): OnnxAttribute {
  if (padding === 'valid') return str('auto_pad', 'VALID');
  if (padding !== 'same') throw opError(op, `has padding "${String(padding)}"; the onnx writer supports "same" and "valid"`);
  // SAME_UPPER is TF's 'same': the odd padding element goes at the end.
  if (dilations.every((d) => d === 1)) return str('auto_pad', 'SAME_UPPER');
  // onnxruntime refuses auto_pad SAME with dilations > 1. TF allows dilation only with stride 1,
  // where 'same' pads (k - 1) * d in total whatever the input size, so the pads can be explicit.
  if (strides.some((s) => s !== 1)) throw opError(op, `has strides [${strides.join(', ')}] with dilations [${dilations.join(', ')}]; 'same' padding needs one of them to be 1 (as in TensorFlow)`);
  const total = kernel.map((k, i) => (k - 1) * dilations[i]);
  const begin = total.map((t) => Math.floor(t / 2));
  return ints('pads', [...begin, ...total.map((t, i) => t - begin[i])]);
}

/**
 * The uint8 codes behind a tensor's values, or undefined when ONNX's DequantizeLinear cannot
 * reproduce them: it computes (q - zeroPoint) * scale, which equals tfjs's q * scale + min only when
 * min = -zeroPoint * scale for an integer zeroPoint in [0, 255] (the converter nudges min so; a
 * range without 0 is not nudged), and only when every value really is a code's dequantization.
 */
function uint8Codes(t: ConstTensor): { codes: Uint8Array; scale: number; zeroPoint: number } | undefined {
  const { scale, min } = t.quantization ?? {};
  if (scale === undefined || min === undefined || !(scale > 0) || !Number.isFinite(scale) || !Number.isFinite(min)) return undefined;
  const zeroPoint = Math.round(-min / scale);
  if (zeroPoint < 0 || zeroPoint > 255 || Math.abs(min + zeroPoint * scale) > ZERO_POINT_TOLERANCE * scale) return undefined;
  const codes = new Uint8Array(t.values.length);
  for (let i = 0; i < t.values.length; i++) {
    const exact = (t.values[i] - min) / scale;
    const q = Math.round(exact);
    if (q < 0 || q > 255 || Math.abs(exact - q) > CODE_TOLERANCE) return undefined;
    codes[i] = q;
  }
  return { codes, scale, zeroPoint };
}

/** Row-major transpose: out's axis i is the input's axis perm[i]. */
function transpose<T extends Float32Array | Uint8Array>(data: T, shape: number[], perm: number[]): T {
  const rank = shape.length;
  const strides = new Array<number>(rank);
  for (let d = rank - 1, s = 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d];
  }
  const outShape = perm.map((p) => shape[p]);
  const outStrides = perm.map((p) => strides[p]);
  const out = (data instanceof Uint8Array ? new Uint8Array(data.length) : new Float32Array(data.length)) as T;
  const index = new Array<number>(rank).fill(0);
  let source = 0;
  for (let o = 0; o < data.length; o++) {
    out[o] = data[source];
    // Odometer over the output index, keeping the source offset in step.
    for (let d = rank - 1; d >= 0; d--) {
      source += outStrides[d];
      if (++index[d] < outShape[d]) break;
      source -= outStrides[d] * outShape[d];
      index[d] = 0;
    }
  }
  return out;
}

function float32Bytes(values: ArrayLike<number>): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return bytes;
}

function int64Bytes(values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
  return bytes;
}

const int = (name: string, i: number): OnnxAttribute => ({ name, type: AttributeType.INT, i });
const ints = (name: string, values: number[]): OnnxAttribute => ({ name, type: AttributeType.INTS, ints: values });
const float = (name: string, f: number): OnnxAttribute => ({ name, type: AttributeType.FLOAT, f });
const str = (name: string, s: string): OnnxAttribute => ({ name, type: AttributeType.STRING, s: new TextEncoder().encode(s) });
