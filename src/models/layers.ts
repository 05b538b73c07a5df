import * as tf from '@tensorflow/tfjs';
import { FastBatchNormalization } from './batch-norm.js';

// The layer kinds a pipeline file may list, each with the options it accepts (a JSON Schema
// fragment, so misspelled options get a did-you-mean on load) and how it becomes a tfjs layer.
// Option names are tfjs-layers' own (Keras's, in camelCase) and are passed through unchanged.

export const ACTIVATIONS = [
  'linear', 'relu', 'relu6', 'elu', 'selu', 'sigmoid', 'hardSigmoid', 'tanh', 'softmax', 'softplus', 'softsign',
  'swish', 'mish', 'gelu',
] as const;

const INITIALIZERS = [
  'glorotUniform', 'glorotNormal', 'heUniform', 'heNormal', 'leCunUniform', 'leCunNormal', 'zeros', 'ones',
  'randomUniform', 'randomNormal', 'truncatedNormal', 'varianceScaling', 'orthogonal',
] as const;

type JsonSchema = Record<string, unknown>;

/**
 * Largest units, filters and depth multiplier. Each weight tensor is allocated (and randomly
 * initialised) as its layer is added, so `units: 1e9` would ask for gigabytes before any other
 * check could speak; the whole model is also held to MAX_PARAMETERS (topology.ts).
 */
export const MAX_UNITS = 65536;
/** Largest kernel, pool, stride and dilation along one axis: far beyond any image the data can hold. */
export const MAX_WINDOW = 1024;

const positiveInt: JsonSchema = { type: 'integer', minimum: 1 };
const unitCount: JsonSchema = { type: 'integer', minimum: 1, maximum: MAX_UNITS };
const windowSize: JsonSchema = { type: 'integer', minimum: 1, maximum: MAX_WINDOW };
const intOrPair: JsonSchema = {
  oneOf: [windowSize, { type: 'array', items: windowSize, minItems: 2, maxItems: 2 }],
};
const activation: JsonSchema = { enum: [...ACTIVATIONS] };
const padding: JsonSchema = { enum: ['valid', 'same'] };
const initializer: JsonSchema = { enum: [...INITIALIZERS] };
const rate: JsonSchema = { type: 'number', minimum: 0, exclusiveMaximum: 1 };
const common = { name: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_]*$' } };

export interface LayerKind {
  /** Options besides `type` (and `name`, which every kind accepts). */
  options: Record<string, JsonSchema>;
  required?: string[];
  create(args: Record<string, unknown>): tf.layers.Layer;
}

// tfjs-layers' factory functions take loosely typed configs; the schema above is what checks them.
type Factory = (args: never) => tf.layers.Layer;
const make = (factory: Factory) => (args: Record<string, unknown>) => factory(args as never);

export const LAYER_KINDS: Record<string, LayerKind> = {
  dense: {
    options: { units: unitCount, activation, useBias: { type: 'boolean' }, kernelInitializer: initializer, biasInitializer: initializer },
    required: ['units'],
    create: make(tf.layers.dense),
  },
  conv2d: {
    options: {
      filters: unitCount, kernelSize: intOrPair, strides: intOrPair, padding, activation,
      dilationRate: intOrPair, useBias: { type: 'boolean' }, kernelInitializer: initializer, biasInitializer: initializer,
    },
    required: ['filters', 'kernelSize'],
    create: make(tf.layers.conv2d),
  },
  depthwiseConv2d: {
    options: {
      kernelSize: intOrPair, depthMultiplier: { ...positiveInt, maximum: MAX_WINDOW }, strides: intOrPair, padding, activation,
      useBias: { type: 'boolean' }, depthwiseInitializer: initializer,
    },
    required: ['kernelSize'],
    create: make(tf.layers.depthwiseConv2d),
  },
  maxPooling2d: { options: { poolSize: intOrPair, strides: intOrPair, padding }, create: make(tf.layers.maxPooling2d) },
  averagePooling2d: { options: { poolSize: intOrPair, strides: intOrPair, padding }, create: make(tf.layers.averagePooling2d) },
  globalAveragePooling2d: { options: {}, create: make(tf.layers.globalAveragePooling2d) },
  globalMaxPooling2d: { options: {}, create: make(tf.layers.globalMaxPooling2d) },
  flatten: { options: {}, create: make(tf.layers.flatten) },
  dropout: { options: { rate }, required: ['rate'], create: make(tf.layers.dropout) },
  batchNormalization: {
    options: {
      momentum: { type: 'number', minimum: 0, maximum: 1 }, epsilon: { type: 'number', exclusiveMinimum: 0 },
      center: { type: 'boolean' }, scale: { type: 'boolean' },
    },
    // tfjs's layer with a cheaper training gradient (batch-norm.ts); saved as BatchNormalization.
    create: make((args) => new FastBatchNormalization(args)),
  },
  activation: { options: { activation }, required: ['activation'], create: make(tf.layers.activation) },
  reshape: {
    options: { targetShape: { type: 'array', items: { type: 'integer', minimum: -1 }, minItems: 1 } },
    required: ['targetShape'],
    create: make(tf.layers.reshape),
  },
};

/** JSON Schema of one entry of `model.layers`, discriminated by `type`. */
export function layerSchema(): JsonSchema {
  const kinds = Object.keys(LAYER_KINDS);
  return {
    type: 'object',
    required: ['type'],
    properties: { type: { enum: kinds, description: 'tfjs-layers layer kind' } },
    allOf: kinds.map((kind) => ({
      if: { properties: { type: { const: kind } }, required: ['type'] },
      then: {
        properties: { type: { const: kind }, ...common, ...LAYER_KINDS[kind].options },
        required: LAYER_KINDS[kind].required ?? [],
        additionalProperties: false,
      },
    })),
  };
}
