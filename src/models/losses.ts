import * as tf from '@tensorflow/tfjs';
import { namedChoiceSchema, parseNamedChoice, type NamedChoice } from './named-choice.js';

// Classification losses on integer labels. They take the model's raw output and whether it is
// already a softmax: from logits the cross-entropy goes through log-softmax (stable); from
// probabilities it clips like Keras does, since a softmax head cannot be undone exactly.

export const LOSSES = ['sparseCategoricalCrossentropy', 'categoricalCrossentropy', 'meanSquaredError'] as const;
export type LossName = (typeof LOSSES)[number];
export type LossSpec = NamedChoice<LossName, { labelSmoothing?: number }>;

const EPSILON = 1e-7;

export interface ResolvedLoss {
  name: LossName;
  labelSmoothing: number;
}

export function parseLossSpec(spec: LossSpec | undefined): ResolvedLoss {
  const { name, options } = parseNamedChoice(spec ?? 'sparseCategoricalCrossentropy');
  return { name, labelSmoothing: options.labelSmoothing ?? 0 };
}

/** Log-probabilities of each class, from logits or from a softmax output. */
export function logProbabilities(output: tf.Tensor2D, isProbabilities: boolean): tf.Tensor2D {
  return isProbabilities ? tf.log(tf.clipByValue(output, EPSILON, 1 - EPSILON)) : tf.logSoftmax(output);
}

/** Mean loss over the batch. `labels` are int32 class indices. */
export function classificationLoss(
  loss: ResolvedLoss,
  labels: tf.Tensor1D,
  output: tf.Tensor2D,
  isProbabilities: boolean,
): tf.Scalar {
  return tf.tidy(() => {
    const numClasses = output.shape[1];
    let target: tf.Tensor2D = tf.oneHot(labels, numClasses).toFloat() as tf.Tensor2D;
    if (loss.labelSmoothing > 0) {
      target = tf.add(tf.mul(target, 1 - loss.labelSmoothing), loss.labelSmoothing / numClasses);
    }
    if (loss.name === 'meanSquaredError') {
      const probs = isProbabilities ? output : tf.softmax(output);
      return tf.mean(tf.squaredDifference(probs, target));
    }
    const logp = logProbabilities(output, isProbabilities);
    return tf.neg(tf.mean(tf.sum(tf.mul(target, logp), 1)));
  }) as tf.Scalar;
}

export function lossSchema(): Record<string, unknown> {
  const labelSmoothing = { type: 'number', minimum: 0, exclusiveMaximum: 1 };
  return namedChoiceSchema(
    'loss by name, e.g. sparseCategoricalCrossentropy, or {categoricalCrossentropy: {labelSmoothing: 0.1}}',
    Object.fromEntries(LOSSES.map((n) => [n, { labelSmoothing }])),
  );
}
