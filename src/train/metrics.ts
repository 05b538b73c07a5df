import * as tf from '@tensorflow/tfjs';
import type { DataSplit } from '../data/types.js';
import { classificationLoss, type ResolvedLoss } from '../models/losses.js';

export interface ClassMetrics {
  class: string;
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationMetrics {
  samples: number;
  accuracy: number;
  loss: number;
  perClass: ClassMetrics[];
  macroF1: number;
  /** confusionMatrix[true class][predicted class] = count. */
  confusionMatrix: number[][];
}

/** Model outputs for a whole split, computed in batches so memory stays flat. */
export async function predictSplit(
  model: tf.LayersModel,
  split: DataSplit,
  featureShape: number[],
  batchSize = 512,
): Promise<Float32Array> {
  const features = featureShape.reduce((a, b) => a * b, 1);
  let outputs: Float32Array | undefined;
  for (let start = 0; start < split.count; start += batchSize) {
    const end = Math.min(split.count, start + batchSize);
    const batch = tf.tidy(() => {
      const x = tf.tensor(split.x.subarray(start * features, end * features), [end - start, ...featureShape]);
      return model.predict(x) as tf.Tensor2D;
    });
    const values = (await batch.data()) as Float32Array;
    const numClasses = batch.shape[1];
    batch.dispose();
    outputs ??= new Float32Array(split.count * numClasses);
    outputs.set(values, start * numClasses);
  }
  return outputs ?? new Float32Array(0);
}

export function argmaxRows(outputs: Float32Array, numClasses: number): Int32Array {
  const n = outputs.length / numClasses;
  const predicted = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let c = 1; c < numClasses; c++) if (outputs[i * numClasses + c] > outputs[i * numClasses + best]) best = c;
    predicted[i] = best;
  }
  return predicted;
}

export function classificationReport(labels: Int32Array, predicted: Int32Array, classes: string[]): Omit<ClassificationMetrics, 'loss'> {
  const k = classes.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    confusion[labels[i]][predicted[i]]++;
    if (labels[i] === predicted[i]) correct++;
  }
  const perClass = classes.map((name, c) => {
    const tp = confusion[c][c];
    const support = confusion[c].reduce((a, b) => a + b, 0);
    const predictedAs = confusion.reduce((sum, row) => sum + row[c], 0);
    const precision = predictedAs ? tp / predictedAs : 0;
    const recall = support ? tp / support : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { class: name, precision, recall, f1, support };
  });
  return {
    samples: labels.length,
    accuracy: labels.length ? correct / labels.length : 0,
    perClass,
    macroF1: perClass.reduce((s, c) => s + c.f1, 0) / Math.max(1, k),
    confusionMatrix: confusion,
  };
}

export async function evaluateClassifier(
  model: tf.LayersModel,
  split: DataSplit,
  featureShape: number[],
  classes: string[],
  loss: ResolvedLoss,
  isProbabilities: boolean,
): Promise<ClassificationMetrics> {
  const outputs = await predictSplit(model, split, featureShape);
  const k = classes.length;
  const lossValue = tf.tidy(() =>
    classificationLoss(loss, tf.tensor1d(split.y, 'int32'), tf.tensor2d(outputs, [split.count, k]), isProbabilities),
  );
  const lossNumber = (await lossValue.data())[0];
  lossValue.dispose();
  return { ...classificationReport(split.y, argmaxRows(outputs, k), classes), loss: lossNumber };
}
