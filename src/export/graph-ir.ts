import type { QuantizationEntry } from '../compress/quantization.js';

// The one description of an exported model that every graph writer reads (tfjs-graph / SavedModel
// GraphDef, ONNX). lower.ts builds it from a tfjs layers model: batch normalisation already folded
// into the conv/dense before it (or left as a per-channel scale and shift where it cannot be),
// dropout gone, activations attached to the op they follow. Writers translate op by op and never
// look at the layers model, so a new format is one new writer.
//
// Conventions, as TensorFlow's: activations are NHWC between ops; conv kernels are
// [height, width, inChannels, outChannels] (HWIO), depthwise kernels [height, width, inChannels,
// multiplier], dense kernels [in, out]. The ops form a chain: each consumes the previous op's output
// (the first consumes the graph input) and the last op's output is the graph output.

/** Activations every writer supports; lower.ts rejects the rest with the layer's name. */
export const GRAPH_ACTIVATIONS = ['linear', 'relu', 'relu6', 'elu', 'sigmoid', 'tanh', 'softmax'] as const;
export type GraphActivation = (typeof GRAPH_ACTIVATIONS)[number];

/** A constant tensor: the float values a runtime computes with. */
export interface ConstTensor {
  /** Unique in the graph; writers use it as the constant's node/initializer name. */
  name: string;
  shape: number[];
  /** Float32 values, row-major; for a quantized tensor, the dequantized values (exactly what stock tfjs computes with). */
  values: Float32Array;
  /**
   * Set when the values are exactly the dequantization of stored codes (as tensorflowjs_converter
   * writes them: uint8/uint16 value = code * scale + min, or float16), so a writer may store the
   * codes instead of float32. Tensors computed at export (folded kernels) have none.
   */
  quantization?: QuantizationEntry;
}

export type Padding = 'same' | 'valid';
export type Pair = [number, number];

export type GraphOp =
  | {
      op: 'conv2d';
      name: string;
      kernel: ConstTensor; // [kh, kw, in, out]
      bias?: ConstTensor; // [out]
      strides: Pair;
      dilations: Pair;
      padding: Padding;
      activation: GraphActivation;
    }
  | {
      op: 'depthwiseConv2d';
      name: string;
      kernel: ConstTensor; // [kh, kw, in, multiplier]
      bias?: ConstTensor; // [in * multiplier]
      strides: Pair;
      dilations: Pair;
      padding: Padding;
      activation: GraphActivation;
    }
  | {
      op: 'dense';
      name: string;
      kernel: ConstTensor; // [in, out]; input is [batch, in]
      bias?: ConstTensor; // [out]
      activation: GraphActivation;
    }
  | { op: 'maxPool' | 'avgPool'; name: string; poolSize: Pair; strides: Pair; padding: Padding }
  /** Mean over height and width: [N, H, W, C] -> [N, C]. */
  | { op: 'globalAvgPool'; name: string }
  /** Max over height and width: [N, H, W, C] -> [N, C]. */
  | { op: 'globalMaxPool'; name: string }
  /** To [batch, ...shape] in row-major (NHWC) order; flatten is a reshape to [product]. */
  | { op: 'reshape'; name: string; shape: number[] }
  /** x * scale + shift over the last axis: a batch normalisation that could not be folded. */
  | { op: 'scaleShift'; name: string; scale: ConstTensor; shift: ConstTensor; activation: GraphActivation }
  | { op: 'activation'; name: string; activation: GraphActivation };

export interface GraphTensorSpec {
  /** Signature key and node name, e.g. "input" / "probabilities". */
  name: string;
  /** With the batch dimension first, null (unknown). */
  shape: (number | null)[];
  dtype: 'float32';
}

export interface ExportGraph {
  input: GraphTensorSpec;
  output: GraphTensorSpec;
  ops: GraphOp[];
}

/** Every constant of the graph, in op order (kernel before bias, scale before shift). */
export function graphConstants(graph: ExportGraph): ConstTensor[] {
  const out: ConstTensor[] = [];
  for (const op of graph.ops) {
    if ('kernel' in op) out.push(op.kernel, ...(op.bias ? [op.bias] : []));
    if (op.op === 'scaleShift') out.push(op.scale, op.shift);
  }
  return out;
}
