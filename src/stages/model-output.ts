import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import type { LoadedDataset, Preprocessing } from '../data/types.js';
import { loadLayersModelFrom, MODEL_JSON, saveLayersModel } from '../models/io.js';
import { InputError } from '../errors.js';
import { writeFileSynced } from '../util/fs.js';
import type { StageContext, StageInput } from './types.js';

// Every stage that produces a model writes the same files, so any later stage (evaluate, prune,
// export, serve) can read any earlier one: the tfjs layers model plus what inference needs to see
// inputs as training did.

export const INPUT_SPEC_FILE = 'input-spec.json';

export interface InputSpec {
  dataset: string;
  featureShape: number[];
  classes: string[];
  preprocessing: Preprocessing;
  /** Whether the model's output is a softmax (probabilities) rather than logits. */
  outputIsProbabilities: boolean;
}

export async function writeModelOutput(
  dir: string,
  model: tf.LayersModel,
  dataset: LoadedDataset,
  outputIsProbabilities: boolean,
): Promise<void> {
  await saveLayersModel(model, dir);
  const spec: InputSpec = {
    dataset: dataset.name,
    featureShape: dataset.featureShape,
    classes: dataset.classes,
    preprocessing: dataset.preprocessing,
    outputIsProbabilities,
  };
  await writeFileSynced(join(dir, INPUT_SPEC_FILE), `${JSON.stringify(spec, null, 2)}\n`);
}

export async function readInputSpec(dir: string): Promise<InputSpec> {
  return JSON.parse(await readFile(join(dir, INPUT_SPEC_FILE), 'utf8')) as InputSpec;
}

export function loadModelOutput(dir: string): Promise<tf.LayersModel> {
  return loadLayersModelFrom(join(dir, MODEL_JSON));
}

/** The data set must be the model's kind of input: same classes in the same order, same sample shape. */
export function checkCompatible(spec: InputSpec, dataset: LoadedDataset, from: string): void {
  if (spec.classes.join('\u0000') !== dataset.classes.join('\u0000')) {
    throw new InputError(
      `stage "${from}" was trained on classes [${spec.classes.join(', ')}] but data set "${dataset.name}" has ` +
        `[${dataset.classes.join(', ')}]; set \`data\` to the data set the model was trained on`,
    );
  }
  if (spec.featureShape.join(',') !== dataset.featureShape.join(',')) {
    throw new InputError(
      `stage "${from}" takes samples of shape [${spec.featureShape.join(', ')}] but data set "${dataset.name}" has ` +
        `[${dataset.featureShape.join(', ')}]`,
    );
  }
}

/** A model-producing upstream stage with its input spec, and the data set to use it on, checked to fit. */
export async function modelInput(
  ctx: StageContext,
  from: string,
  data: string,
): Promise<{ input: StageInput; spec: InputSpec; dataset: LoadedDataset }> {
  const input = await ctx.input(from);
  const [spec, dataset] = await Promise.all([readInputSpec(input.version.dir), ctx.data(data)]);
  checkCompatible(spec, dataset, from);
  return { input, spec, dataset };
}
