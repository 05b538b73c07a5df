import { InputError } from '../errors.js';

// What a model will allocate, worked out before tfjs builds it. tfjs creates and randomly
// initialises every weight as a layer is added or a topology is deserialised, before any loaded
// weights are compared with it, so a `units: 1e9` or a hostile model.json would take gigabytes
// (or fail deep inside tfjs) before our checks could speak. Shapes are inferred here for the layer
// kinds a pipeline can hold, from Keras-style configs (camelCase from a pipeline file, snake_case
// from a model.json).

/** The most parameters a model may have: 400 MB of float32, several times that while training. */
export const MAX_PARAMETERS = 100_000_000;

/** model.json class names we can check, by the kind names of pipeline files (layers.ts). */
const CLASS_KINDS: Record<string, string> = {
  InputLayer: 'input',
  Dense: 'dense',
  Conv2D: 'conv2d',
  DepthwiseConv2D: 'depthwiseConv2d',
  MaxPooling2D: 'maxPooling2d',
  MaxPool2D: 'maxPooling2d',
  AveragePooling2D: 'averagePooling2d',
  AvgPool2D: 'averagePooling2d',
  GlobalAveragePooling2D: 'globalAveragePooling2d',
  GlobalAvgPool2D: 'globalAveragePooling2d',
  GlobalMaxPooling2D: 'globalMaxPooling2d',
  GlobalMaxPool2D: 'globalMaxPooling2d',
  Flatten: 'flatten',
  Dropout: 'dropout',
  BatchNormalization: 'batchNormalization',
  Activation: 'activation',
  Reshape: 'reshape',
};

export interface WeightShape {
  /** `<layer name>/<weight>`, as tfjs names it in a weights manifest. */
  name: string;
  shape: number[];
}

interface LayerConfig {
  kind: string;
  name: string;
  config: Record<string, unknown>;
}

/** Thrown for a config whose shapes we cannot follow; callers say where. */
class ShapeProblem extends Error {}

const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

function option(config: Record<string, unknown>, camel: string): unknown {
  const snake = camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return config[camel] ?? config[snake];
}

function positive(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ShapeProblem(`${what} is ${JSON.stringify(value) ?? String(value)}; expected a whole number >= 1`);
  }
  return value;
}

function pair(value: unknown, fallback: number | number[], what: string): [number, number] {
  const v = value ?? fallback;
  const items = Array.isArray(v) ? v : [v, v];
  if (items.length !== 2) throw new ShapeProblem(`${what} is ${JSON.stringify(v)}; expected a number or two`);
  return [positive(items[0], what), positive(items[1], what)];
}

/** tfjs's convOutputLength: the output size along one axis, or 0 when the window does not fit. */
function windowOutput(size: number, window: number, stride: number, dilation: number, padding: unknown): number {
  const dilated = window + (window - 1) * (dilation - 1);
  const length = padding === 'same' ? size : size - dilated + 1;
  return length > 0 ? Math.floor((length + stride - 1) / stride) : 0;
}

function image(input: number[], kind: string): [number, number, number] {
  if (input.length !== 3) throw new ShapeProblem(`${kind} needs inputs of shape [height, width, channels], found [${input.join(', ')}]`);
  return input as [number, number, number];
}

function channelsLast(config: Record<string, unknown>, kind: string): void {
  const format = option(config, 'dataFormat');
  if (format !== undefined && format !== null && format !== 'channels_last' && format !== 'channelsLast') {
    throw new ShapeProblem(`${kind} has data_format ${JSON.stringify(format)}; only channels_last is supported`);
  }
}

/** Output shape (without the batch axis) and the weights a layer creates for an input shape. */
function inferLayer(layer: LayerConfig, input: number[]): { output: number[]; weights: [string, number[]][] } {
  const c = layer.config;
  const useBias = option(c, 'useBias') !== false;
  switch (layer.kind) {
    case 'input':
    case 'dropout':
    case 'activation':
      return { output: input, weights: [] };
    case 'flatten':
      return { output: [product(input)], weights: [] };
    case 'dense': {
      const units = positive(option(c, 'units'), 'units');
      const inner = input.at(-1);
      if (inner === undefined) throw new ShapeProblem('dense needs an input with at least one axis');
      return { output: [...input.slice(0, -1), units], weights: [['kernel', [inner, units]], ...(useBias ? [['bias', [units]] as [string, number[]]] : [])] };
    }
    case 'conv2d':
    case 'depthwiseConv2d': {
      channelsLast(c, layer.kind);
      const [h, w, ch] = image(input, layer.kind);
      const [kh, kw] = pair(option(c, 'kernelSize'), NaN, 'kernel size');
      const [sh, sw] = pair(option(c, 'strides'), 1, 'strides');
      const [dh, dw] = pair(option(c, 'dilationRate'), 1, 'dilation rate');
      const spatial = [windowOutput(h, kh, sh, dh, option(c, 'padding')), windowOutput(w, kw, sw, dw, option(c, 'padding'))];
      if (layer.kind === 'conv2d') {
        const filters = positive(option(c, 'filters'), 'filters');
        return { output: [...spatial, filters], weights: [['kernel', [kh, kw, ch, filters]], ...(useBias ? [['bias', [filters]] as [string, number[]]] : [])] };
      }
      const multiplier = positive(option(c, 'depthMultiplier') ?? 1, 'depth multiplier');
      return {
        output: [...spatial, ch * multiplier],
        weights: [['depthwise_kernel', [kh, kw, ch, multiplier]], ...(useBias ? [['bias', [ch * multiplier]] as [string, number[]]] : [])],
      };
    }
    case 'maxPooling2d':
    case 'averagePooling2d': {
      channelsLast(c, layer.kind);
      const [h, w, ch] = image(input, layer.kind);
      const pool = pair(option(c, 'poolSize'), 2, 'pool size');
      const [sh, sw] = pair(option(c, 'strides'), pool, 'strides');
      const padding = option(c, 'padding');
      return { output: [windowOutput(h, pool[0], sh, 1, padding), windowOutput(w, pool[1], sw, 1, padding), ch], weights: [] };
    }
    case 'globalAveragePooling2d':
    case 'globalMaxPooling2d':
      channelsLast(c, layer.kind);
      return { output: [image(input, layer.kind)[2]], weights: [] };
    case 'batchNormalization': {
      const axisOption = option(c, 'axis') ?? -1;
      const axis = Array.isArray(axisOption) && axisOption.length === 1 ? axisOption[0] : axisOption;
      // Keras counts the batch axis; -1 and the last index both mean channels.
      if (axis !== -1 && axis !== input.length) throw new ShapeProblem(`batch normalization over axis ${JSON.stringify(axisOption)}; only the last axis is supported`);
      const ch = input.at(-1)!;
      const weights: [string, number[]][] = [];
      if (option(c, 'scale') !== false) weights.push(['gamma', [ch]]);
      if (option(c, 'center') !== false) weights.push(['beta', [ch]]);
      weights.push(['moving_mean', [ch]], ['moving_variance', [ch]]);
      return { output: input, weights };
    }
    case 'reshape': {
      const target = option(c, 'targetShape');
      if (!Array.isArray(target) || target.some((d) => !Number.isSafeInteger(d) || (d < 1 && d !== -1))) {
        throw new ShapeProblem(`target shape ${JSON.stringify(target)} is not a list of whole numbers >= 1 (or one -1)`);
      }
      const known = product(target.filter((d) => d !== -1));
      const output = target.map((d) => (d === -1 ? Math.floor(product(input) / known) : d));
      return { output, weights: [] };
    }
    default:
      throw new ShapeProblem(`layer kind "${layer.kind}" is not supported`);
  }
}

/**
 * Walks a chain of layers from an input shape, collecting the weights each creates. Stops quietly
 * at a layer whose output would be empty (a window larger than its input): tfjs reports that
 * itself, in words the caller already turns into a message, and allocates nothing past it.
 */
function inferChain(layers: LayerConfig[], inputShape: number[]): { weights: WeightShape[]; parameters: number } {
  const weights: WeightShape[] = [];
  let parameters = 0;
  let shape = inputShape;
  for (const layer of layers) {
    let inferred;
    try {
      inferred = inferLayer(layer, shape);
    } catch (err) {
      if (err instanceof ShapeProblem) throw new ShapeProblem(`layer "${layer.name}" (${layer.kind}): ${err.message}`);
      throw err;
    }
    for (const [suffix, dims] of inferred.weights) {
      weights.push({ name: `${layer.name}/${suffix}`, shape: dims });
      parameters += product(dims);
    }
    if (inferred.output.some((d) => !(d >= 1))) break;
    shape = inferred.output;
  }
  return { weights, parameters };
}

function budgetMessage(parameters: number): string {
  return (
    `${parameters.toExponential(2)} parameters, over the limit of ${MAX_PARAMETERS.toLocaleString('en-US')} ` +
    '(400 MB of float32 weights, several times that while training)'
  );
}

/**
 * Refuses a pipeline file's layer list whose weights would exceed MAX_PARAMETERS for this input
 * shape, before tfjs allocates any of them. `where` is "stages.teacher.model".
 */
export function checkLayerBudget(layers: { type: string; name?: string; [option: string]: unknown }[], inputShape: number[], where: string): void {
  let result;
  try {
    result = inferChain(
      layers.map(({ type, ...config }, i) => ({ kind: type, name: `layers.${i}`, config })),
      inputShape,
    );
  } catch (err) {
    // The schema already checked each option; anything left over tfjs words better.
    if (err instanceof ShapeProblem) return;
    throw err;
  }
  if (result.parameters > MAX_PARAMETERS) {
    const largest = [...result.weights].sort((a, b) => product(b.shape) - product(a.shape))[0];
    const at = largest.name.split('/')[0];
    throw new InputError(
      `${where}: for inputs of shape [${inputShape.join(', ')}] the layers have ${budgetMessage(result.parameters)}; ` +
        `the largest weight is ${where}.${at}'s ${largest.name.split('/')[1]} of shape [${largest.shape.join(', ')}]: ` +
        'use fewer units or filters, or pool before flatten and dense',
    );
  }
}

/**
 * Checks a model.json's topology against its weights manifest before tfjs builds anything: every
 * layer of a kind we know (others are refused), the parameters the topology would allocate within
 * MAX_PARAMETERS and equal to what the manifest holds, and each weight the manifest names for a
 * layer of the shape that layer creates.
 */
export function checkTopology(topology: unknown, manifest: WeightShape[], file: string): void {
  const fail = (message: string): never => {
    throw new InputError(`${file}: ${message}`);
  };
  const { layers, inputShape } = readTopology(topology, fail);
  let expected;
  try {
    expected = inferChain(layers, inputShape);
  } catch (err) {
    if (err instanceof ShapeProblem) fail(`${err.message}; fix the topology, or build the model from layers in the pipeline file`);
    throw err;
  }
  if (expected!.parameters > MAX_PARAMETERS) {
    const largest = [...expected!.weights].sort((a, b) => product(b.shape) - product(a.shape))[0];
    fail(
      `the topology declares ${budgetMessage(expected!.parameters)}; the largest weight is ${largest.name} of shape ` +
        `[${largest.shape.join(', ')}]; refusing to build it`,
    );
  }
  const declared = new Map(manifest.map((w) => [w.name, w.shape]));
  for (const w of expected!.weights) {
    const shape = declared.get(w.name);
    if (shape && shape.join(',') !== w.shape.join(',')) {
      fail(
        `the topology's layer "${w.name.split('/')[0]}" needs ${w.name} of shape [${w.shape.join(', ')}], ` +
          `but the weights manifest declares [${shape.join(', ')}]; the topology and the weights do not belong together`,
      );
    }
  }
  const held = manifest.reduce((n, w) => n + product(w.shape), 0);
  if (held !== expected!.parameters) {
    fail(
      `the topology needs ${expected!.parameters.toLocaleString('en-US')} weight values but the weights manifest declares ` +
        `${held.toLocaleString('en-US')}; the topology and the weights do not belong together`,
    );
  }
}

/** The layers and input shape of a Sequential model, or of a functional one that is a chain. */
function readTopology(topology: unknown, fail: (message: string) => never): { layers: LayerConfig[]; inputShape: number[] } {
  const top = asRecord(topology);
  // tfjs writes {modelTopology: {class_name, config}}; Keras's converter sometimes nests model_config.
  const model = asRecord(top?.['model_config']) ?? top;
  const className = model?.['class_name'];
  const config = model?.['config'];
  const rawLayers = Array.isArray(config) ? config : asRecord(config)?.['layers'];
  if (typeof className !== 'string' || !Array.isArray(rawLayers)) {
    fail('modelTopology is not a Keras model config (expected {class_name, config: {layers: [...]}})');
  }
  if (className !== 'Sequential' && className !== 'Model' && className !== 'Functional') {
    fail(`modelTopology is a ${JSON.stringify(className)}; expected a Sequential or functional layers model`);
  }
  const layers: LayerConfig[] = [];
  let inputShape: number[] | undefined;
  let previous: string | undefined;
  for (const [i, raw] of (rawLayers as unknown[]).entries()) {
    const entry = asRecord(raw);
    const layerClass = entry?.['class_name'];
    const layerConfig = asRecord(entry?.['config']);
    if (typeof layerClass !== 'string' || !layerConfig) fail(`layer ${i} of the topology has no class_name and config`);
    const kind = CLASS_KINDS[layerClass as string];
    if (!kind) {
      fail(
        `layer ${i} is a ${JSON.stringify(layerClass)}, which this tool cannot check before building; ` +
          `supported: ${[...new Set(Object.keys(CLASS_KINDS))].join(', ')}`,
      );
    }
    const name = String(layerConfig!['name'] ?? entry!['name'] ?? `layer${i}`);
    if (className !== 'Sequential' && kind !== 'input') {
      const inbound = inboundLayers(entry!['inbound_nodes']);
      if (inbound.length !== 1 || inbound[0] !== previous) {
        fail(`layer "${name}" does not take the previous layer's output alone; only chains of layers (Sequential) are supported`);
      }
    }
    const shape = option(layerConfig!, 'batchInputShape') ?? option(layerConfig!, 'batchShape');
    if (shape !== undefined && shape !== null) {
      if (inputShape || !Array.isArray(shape) || shape.length < 2) fail(`layer "${name}" declares an unexpected input shape ${JSON.stringify(shape)}`);
      const dims = (shape as unknown[]).slice(1);
      if (dims.some((d) => typeof d !== 'number' || !Number.isSafeInteger(d) || d < 1)) {
        fail(`layer "${name}" declares input shape ${JSON.stringify(shape)}; expected whole numbers >= 1 after the batch axis`);
      }
      inputShape = dims as number[];
    }
    layers.push({ kind: kind!, name, config: layerConfig! });
    previous = name;
  }
  if (!inputShape) fail('the topology declares no input shape (batch_input_shape on its first layer)');
  return { layers, inputShape: inputShape! };
}

/** Names of the layers feeding a functional layer: Keras 2 `[[[name, 0, 0, {}]]]` or Keras 3 `keras_history`. */
function inboundLayers(nodes: unknown): string[] {
  if (!Array.isArray(nodes)) return [];
  const names: string[] = [];
  for (const node of nodes) {
    if (Array.isArray(node)) {
      for (const ref of node) if (Array.isArray(ref) && typeof ref[0] === 'string') names.push(ref[0]);
    } else {
      for (const arg of (asRecord(node)?.['args'] as unknown[] | undefined) ?? []) {
        const history = asRecord(asRecord(arg)?.['config'])?.['keras_history'];
        if (Array.isArray(history) && typeof history[0] === 'string') names.push(history[0]);
      }
    }
  }
  return names;
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}
