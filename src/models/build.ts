import { isAbsolute, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors.js';
import { loadLayersModelFrom } from './io.js';
import { LAYER_KINDS } from './layers.js';
import { checkLayerBudget } from './topology.js';

export interface LayerSpec {
  type: string;
  name?: string;
  [option: string]: unknown;
}

/** Either a Keras-style list of layers or a tfjs layers model.json to start from. */
export type ModelSpec = { layers: LayerSpec[] } | { path: string };

export interface BuildContext {
  /** Where the pipeline file is: relative model paths start there. */
  baseDir: string;
  /** Name of the stage and key, for messages: "stages.teacher.model". */
  where: string;
  inputShape: number[];
  numClasses: number;
}

export async function buildModel(spec: ModelSpec, ctx: BuildContext): Promise<tf.LayersModel> {
  const model = 'path' in spec ? await loadFromPath(spec.path, ctx) : buildSequential(spec.layers, ctx);
  const inputShape = model.inputs[0].shape.slice(1);
  if (inputShape.join(',') !== ctx.inputShape.join(',')) {
    throw new InputError(
      `${ctx.where}: the model takes inputs of shape [${inputShape.join(', ')}] but the data set's samples ` +
        `have shape [${ctx.inputShape.join(', ')}]`,
    );
  }
  const outputShape = model.outputs[0].shape;
  if (outputShape.length !== 2 || outputShape[1] !== ctx.numClasses) {
    throw new InputError(
      `${ctx.where}: the model outputs shape [${outputShape.slice(1).join(', ')}] per sample but the data set has ` +
        `${ctx.numClasses} classes: end with a dense layer of ${ctx.numClasses} units (after a flatten)`,
    );
  }
  return model;
}

function buildSequential(layers: LayerSpec[], ctx: BuildContext): tf.Sequential {
  checkLayerBudget(layers, ctx.inputShape, ctx.where);
  const model = tf.sequential();
  layers.forEach((spec, index) => {
    const { type, ...options } = spec;
    const kind = LAYER_KINDS[type];
    if (!kind) throw new InputError(`${ctx.where}.layers.${index}: unknown layer type "${type}"`);
    const args = index === 0 ? { ...options, inputShape: ctx.inputShape } : options;
    try {
      model.add(kind.create(args));
    } catch (err) {
      // tfjs's messages name its internals ("Negative dimension size..."); say which layer of the file.
      throw new InputError(
        `${ctx.where}.layers.${index} (${type}): cannot be added after the layers before it: ${(err as Error).message}`,
      );
    }
  });
  return model;
}

async function loadFromPath(path: string, ctx: BuildContext): Promise<tf.LayersModel> {
  const full = isAbsolute(path) ? path : resolve(ctx.baseDir, path);
  return loadLayersModelFrom(full);
}

/** True when the model's last layer ends in softmax, so its outputs are probabilities, not logits. */
export function outputsProbabilities(model: tf.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  const config = last.getConfig() as { activation?: unknown };
  return config.activation === 'softmax';
}

export function countParameters(model: tf.LayersModel): number {
  return model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
}
