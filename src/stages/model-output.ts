import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import type { LoadedDataset, Preprocessing } from '../data/types.js';
import { loadLayersModelFrom, MODEL_JSON, saveLayersModel } from '../models/io.js';
import { writeFileSynced } from '../util/fs.js';

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
