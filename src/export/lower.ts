import * as tf from '@tensorflow/tfjs';
import type { QuantizationEntry } from '../compress/quantization.js';
import { InputError } from '../errors.js';
import {
  GRAPH_ACTIVATIONS,
  type ConstTensor,
  type ExportGraph,
  type GraphActivation,
  type GraphOp,
  type Padding,
  type Pair,
} from './graph-ir.js';

// tfjs layers model -> ExportGraph: what a serving graph computes at inference, nothing of training.
// Dropout disappears; batch normalisation is folded into the conv/dense before it (W*s, (b-mean)*s+beta)
// unless that kernel is stored quantized, where folding would have to re-quantize and move the
// predictions: there it stays a per-channel scale and shift after the (exact, dequantized) kernel.
// Activation layers join the op they follow, so writers can emit fused ops.

export interface LowerOptions {
  /** The formats asked for, named in errors ("cannot be exported to onnx"). */
  formats: string[];
  /** The stored weights' manifest entries by weight name: kernels stored quantized stay so. */
  quantization?: ReadonlyMap<string, QuantizationEntry>;
  /** Append a softmax (a model trained on logits serves probabilities). */
  appendSoftmax?: boolean;
  inputName?: string;
  outputName?: string;
}

export const EXPORTABLE_LAYERS = [
  'Dense', 'Conv2D', 'DepthwiseConv2D', 'MaxPooling2D', 'AveragePooling2D', 'GlobalAveragePooling2D',
  'GlobalMaxPooling2D', 'Flatten', 'Reshape', 'Dropout', 'BatchNormalization', 'Activation',
] as const;

type Config = Record<string, unknown>;

function pair(value: unknown, fallback: Pair): Pair {
  if (value === undefined || value === null) return fallback;
  if (Array.isArray(value)) return [Number(value[0]), Number(value[1] ?? value[0])];
  return [Number(value), Number(value)];
}

const product = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

export async function lowerLayersModel(model: tf.LayersModel, options: LowerOptions): Promise<ExportGraph> {
  const formats = options.formats.join(', ');
  const layers = chainOf(model, formats);
  // Read every weight up front, asynchronously: a GPU backend cannot read synchronously in Node.
  const stored = new Map<tf.LayerVariable, StoredWeight>();
  for (const layer of layers) {
    const values = layer.getWeights();
    for (const [i, w] of layer.weights.entries()) {
      stored.set(w, { name: w.originalName, shape: values[i].shape.slice(), values: Float32Array.from(await values[i].data()) });
    }
  }
  const ops: GraphOp[] = [];
  const names = new Set<string>();
  const constant: MakeConstant = (name, shape, values, quantization) => {
    if (names.has(name)) throw new Error(`duplicate constant name ${name}`);
    names.add(name);
    return { name, shape, values, ...(quantization ? { quantization } : {}) };
  };

  for (const layer of layers) {
    const className = layer.getClassName();
    const config = layer.getConfig() as Config;
    const where = `layer "${layer.name}" (${className})`;
    const fail = (why: string): never => {
      throw new InputError(`${where} cannot be exported to ${formats}: ${why}`, { code: 'E_EXPORT_LAYER' });
    };
    const activationOf = (): GraphActivation => {
      const name = String(config.activation ?? 'linear');
      if (!(GRAPH_ACTIVATIONS as readonly string[]).includes(name)) {
        fail(`activation "${name}" is not supported (supported: ${GRAPH_ACTIVATIONS.join(', ')})`);
      }
      return name as GraphActivation;
    };
    const weights = new Map(layer.weights.map((w) => [w.originalName.split('/').pop()!, stored.get(w)!]));
    const kernelAndBias = (kernelName: string) => {
      const k = weights.get(kernelName)!;
      const b = config.useBias === false ? undefined : weights.get('bias');
      const make = (name: string, w: StoredWeight) => constant(name, w.shape, w.values, options.quantization?.get(w.name));
      return { kernel: make(`${layer.name}/kernel`, k), ...(b ? { bias: make(`${layer.name}/bias`, b) } : {}) };
    };
    const checkChannelsLast = () => {
      if (config.dataFormat !== undefined && config.dataFormat !== 'channelsLast') fail('only channelsLast data is supported');
    };

    switch (className) {
      case 'InputLayer':
      case 'Dropout':
        break;
      case 'Dense': {
        if ((layer.getInputAt(0) as tf.SymbolicTensor).shape.length !== 2) fail('dense on inputs of rank > 2 is not supported; flatten first');
        ops.push({ op: 'dense', name: layer.name, ...kernelAndBias('kernel'), activation: activationOf() });
        break;
      }
      case 'Conv2D':
      case 'DepthwiseConv2D': {
        checkChannelsLast();
        const common = {
          name: layer.name,
          strides: pair(config.strides, [1, 1]),
          dilations: pair(config.dilationRate, [1, 1]),
          padding: String(config.padding) as Padding,
          activation: activationOf(),
        };
        if (className === 'Conv2D') ops.push({ op: 'conv2d', ...common, ...kernelAndBias('kernel') });
        else ops.push({ op: 'depthwiseConv2d', ...common, ...kernelAndBias('depthwise_kernel') });
        break;
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        checkChannelsLast();
        const poolSize = pair(config.poolSize, [2, 2]);
        ops.push({
          op: className === 'MaxPooling2D' ? 'maxPool' : 'avgPool',
          name: layer.name,
          poolSize,
          strides: pair(config.strides, poolSize),
          padding: String(config.padding ?? 'valid') as Padding,
        });
        break;
      }
      case 'GlobalAveragePooling2D':
      case 'GlobalMaxPooling2D':
        checkChannelsLast();
        ops.push({ op: className === 'GlobalAveragePooling2D' ? 'globalAvgPool' : 'globalMaxPool', name: layer.name });
        break;
      case 'Flatten':
      case 'Reshape': {
        const out = (layer.outputShape as (number | null)[]).slice(1);
        if (out.some((d) => d === null)) fail('the output shape must be known apart from the batch');
        ops.push({ op: 'reshape', name: layer.name, shape: out as number[] });
        break;
      }
      case 'BatchNormalization': {
        const axis = Number(config.axis ?? -1);
        const rank = (layer.outputShape as unknown[]).length;
        if (axis !== -1 && axis !== rank - 1) fail('only normalisation over the last (channel) axis is supported');
        ops.push(...foldBatchNorm(layer.name, ops.pop(), batchNormAffine(weights, config), constant));
        break;
      }
      case 'Activation': {
        const activation = activationOf();
        const previous = ops[ops.length - 1];
        if (previous && 'activation' in previous && previous.op !== 'activation' && previous.activation === 'linear') {
          previous.activation = activation;
        } else if (activation !== 'linear') {
          ops.push({ op: 'activation', name: layer.name, activation });
        }
        break;
      }
      default:
        fail(`supported layers: ${EXPORTABLE_LAYERS.join(', ')}`);
    }
  }

  if (options.appendSoftmax) {
    const last = ops[ops.length - 1];
    if (last && 'activation' in last && last.op !== 'activation' && last.activation === 'linear') last.activation = 'softmax';
    else ops.push({ op: 'activation', name: 'softmax', activation: 'softmax' });
  }
  const inputShape = model.inputs[0].shape;
  const outputShape = model.outputs[0].shape;
  return {
    input: { name: options.inputName ?? 'input', shape: inputShape.slice(), dtype: 'float32' },
    output: { name: options.outputName ?? 'output', shape: outputShape.slice(), dtype: 'float32' },
    ops,
  };
}

interface StoredWeight {
  /** The weight's name in model.json's manifest, e.g. "conv1/kernel". */
  name: string;
  shape: number[];
  values: Float32Array;
}

type MakeConstant = (name: string, shape: number[], values: Float32Array, quantization?: QuantizationEntry) => ConstTensor;

/** The layers in order, checking that the model is one chain (what a pipeline's `layers` list builds). */
function chainOf(model: tf.LayersModel, formats: string): tf.layers.Layer[] {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new InputError(`model "${model.name}" cannot be exported to ${formats}: only single-input, single-output models are supported`, {
      code: 'E_EXPORT_LAYER',
    });
  }
  for (const layer of model.layers) {
    const inbound = layer.inboundNodes.flatMap((n) => n.inboundLayers);
    if (inbound.length > 1) {
      throw new InputError(`layer "${layer.name}" cannot be exported to ${formats}: only a chain of layers (one input each) is supported`, {
        code: 'E_EXPORT_LAYER',
      });
    }
  }
  return model.layers;
}

interface Affine {
  /** Per-channel multiplier and offset: y = x * scale + shift. */
  scale: Float32Array;
  shift: Float32Array;
}

function batchNormAffine(weights: ReadonlyMap<string, StoredWeight>, config: Config): Affine {
  const mean = weights.get('moving_mean')!.values;
  const variance = weights.get('moving_variance')!.values;
  const gamma = weights.get('gamma')?.values;
  const beta = weights.get('beta')?.values;
  const epsilon = Number(config.epsilon ?? 1e-3);
  const scale = new Float32Array(mean.length);
  const shift = new Float32Array(mean.length);
  for (let c = 0; c < mean.length; c++) {
    // As tfjs computes it (x - mean) * gamma / sqrt(var + eps) + beta, in float64 before rounding once.
    const s = (gamma ? gamma[c] : 1) / Math.sqrt(variance[c] + epsilon);
    scale[c] = s;
    shift[c] = (beta ? beta[c] : 0) - mean[c] * s;
  }
  return { scale, shift };
}

/**
 * Folds y = x*scale + shift into the op before it when that op is linear and its kernel is float;
 * otherwise returns that op unchanged followed by a scaleShift op.
 */
function foldBatchNorm(
  name: string,
  previous: GraphOp | undefined,
  { scale, shift }: Affine,
  constant: MakeConstant,
): GraphOp[] {
  const channels = scale.length;
  const foldable =
    previous &&
    (previous.op === 'conv2d' || previous.op === 'dense' || previous.op === 'depthwiseConv2d') &&
    previous.activation === 'linear' &&
    !previous.kernel.quantization &&
    !previous.bias?.quantization;
  if (!foldable) {
    const scaleShift: GraphOp = {
      op: 'scaleShift',
      name,
      scale: constant(`${name}/scale`, [scale.length], scale),
      shift: constant(`${name}/shift`, [shift.length], shift),
      activation: 'linear',
    };
    return previous ? [previous, scaleShift] : [scaleShift];
  }
  const kernel = previous.kernel;
  // Every kernel layout here has the output channel as the fastest-varying index: HWIO and [in, out]
  // directly, and depthwise [kh, kw, in, mult] whose output channel is in*mult + m.
  const outChannels = previous.op === 'depthwiseConv2d' ? kernel.shape[2] * kernel.shape[3] : kernel.shape[kernel.shape.length - 1];
  if (outChannels !== channels) throw new Error(`batch norm "${name}" has ${channels} channels, "${previous.name}" outputs ${outChannels}`);
  const folded = new Float32Array(kernel.values.length);
  for (let i = 0; i < folded.length; i++) folded[i] = kernel.values[i] * scale[i % channels];
  const bias = new Float32Array(channels);
  for (let c = 0; c < channels; c++) bias[c] = (previous.bias ? previous.bias.values[c] : 0) * scale[c] + shift[c];
  return [
    {
      ...previous,
      kernel: { name: kernel.name, shape: kernel.shape, values: folded },
      bias: { name: previous.bias?.name ?? `${previous.name}/bias`, shape: [channels], values: bias },
    },
  ];
}

/** The manifest's quantization entries by weight name, from a model.json's weight specs. */
export function quantizationByWeight(specs: tf.io.WeightsManifestEntry[]): Map<string, QuantizationEntry> {
  const out = new Map<string, QuantizationEntry>();
  for (const spec of specs) if (spec.quantization) out.set(spec.name, spec.quantization as QuantizationEntry);
  return out;
}
