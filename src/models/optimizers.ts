import * as tf from '@tensorflow/tfjs';
import { FusedAdamOptimizer } from '../backend/webgpu/fused-adam.js';
import { namedChoiceSchema, parseNamedChoice, type NamedChoice } from './named-choice.js';

// tfjs optimizers by name with their parameters, with Keras's defaults where one is not given.

const NUMBER = { type: 'number' };
const POSITIVE = { type: 'number', exclusiveMinimum: 0 };

export const OPTIMIZERS = {
  sgd: {
    options: { learningRate: POSITIVE, momentum: { type: 'number', minimum: 0 }, nesterov: { type: 'boolean' } },
    create: (o: Partial<Record<string, number | boolean>>) =>
      o.momentum
        ? tf.train.momentum(num(o.learningRate, 0.01), num(o.momentum, 0), Boolean(o.nesterov))
        : tf.train.sgd(num(o.learningRate, 0.01)),
  },
  adam: {
    options: { learningRate: POSITIVE, beta1: NUMBER, beta2: NUMBER, epsilon: POSITIVE },
    // Ours on every backend. On webgpu the stock optimizer's dozen kernels per variable dominate a
    // training step; ours computes the same update in one kernel per variable (elsewhere with the
    // stock ops). And tf.train.adam's setWeights recomputes beta^t with pow, which differs in the last
    // bits from the product its steps accumulated, so a run resumed from a checkpoint would drift
    // from an uninterrupted one; ours replays the product.
    create: (o: Partial<Record<string, number | boolean>>): tf.Optimizer =>
      new FusedAdamOptimizer(num(o.learningRate, 0.001), num(o.beta1, 0.9), num(o.beta2, 0.999), num(o.epsilon, 1e-7)),
  },
  adamax: {
    options: { learningRate: POSITIVE, beta1: NUMBER, beta2: NUMBER, epsilon: POSITIVE },
    create: (o: Partial<Record<string, number | boolean>>) =>
      tf.train.adamax(num(o.learningRate, 0.002), num(o.beta1, 0.9), num(o.beta2, 0.999), num(o.epsilon, 1e-7)),
  },
  rmsprop: {
    options: { learningRate: POSITIVE, decay: NUMBER, momentum: NUMBER, epsilon: POSITIVE },
    create: (o: Partial<Record<string, number | boolean>>) =>
      tf.train.rmsprop(num(o.learningRate, 0.001), num(o.decay, 0.9), num(o.momentum, 0), num(o.epsilon, 1e-7)),
  },
  adagrad: {
    options: { learningRate: POSITIVE, initialAccumulatorValue: POSITIVE },
    create: (o: Partial<Record<string, number | boolean>>) =>
      tf.train.adagrad(num(o.learningRate, 0.01), num(o.initialAccumulatorValue, 0.1)),
  },
  adadelta: {
    options: { learningRate: POSITIVE, rho: NUMBER, epsilon: POSITIVE },
    create: (o: Partial<Record<string, number | boolean>>) =>
      tf.train.adadelta(num(o.learningRate, 1), num(o.rho, 0.95), num(o.epsilon, 1e-7)),
  },
} as const;

export type OptimizerName = keyof typeof OPTIMIZERS;
export type OptimizerSpec = NamedChoice<OptimizerName, Record<string, number | boolean>>;

function num(value: number | boolean | undefined, fallback: number): number {
  return typeof value === 'number' ? value : fallback;
}

export function createOptimizer(spec: OptimizerSpec): tf.Optimizer {
  const { name, options } = parseNamedChoice(spec);
  return OPTIMIZERS[name].create(options);
}

export function optimizerSchema(): Record<string, unknown> {
  return namedChoiceSchema(
    'a tfjs optimizer by name, e.g. adam, or with parameters: {adam: {learningRate: 0.001}}',
    Object.fromEntries(Object.entries(OPTIMIZERS).map(([name, o]) => [name, o.options])),
  );
}
