import { evaluateClassifier } from '../train/metrics.js';
import { parseLossSpec } from '../models/losses.js';
import { modelInput } from './model-output.js';
import type { StageKind } from './types.js';

export interface EvaluateOptions extends Record<string, unknown> {
  from: string;
  data: string;
  split: 'test' | 'validation' | 'train';
}

export const evaluateStage: StageKind<EvaluateOptions> = {
  kind: 'evaluate',
  description: "measure a model's accuracy, loss, per-class precision/recall/F1 and confusion matrix on a split",
  options: {
    from: { type: 'string', description: 'the stage whose model to evaluate' },
    data: { type: 'string', description: 'data set name (default: the one the model was trained on)' },
    split: { enum: ['test', 'validation', 'train'], default: 'test' },
  },
  required: ['from'],
  resolve(o, ctx) {
    return { ...o, data: o.data ?? ctx.dataOf(o.from) ?? '', split: o.split ?? 'test' };
  },
  inputs: (o) => ({ stages: [o.from], data: o.data ? [o.data] : [] }),
  async run(ctx, o) {
    const { input, spec, dataset } = await modelInput(ctx, o.from, o.data);
    const model = await input.loadModel();
    const metrics = await evaluateClassifier(
      model,
      dataset[o.split],
      dataset.featureShape,
      dataset.classes,
      parseLossSpec(undefined),
      spec.outputIsProbabilities,
    );
    model.dispose();
    ctx.observer.info(`${o.split} accuracy ${metrics.accuracy.toFixed(4)}, loss ${metrics.loss.toFixed(4)} on ${metrics.samples} samples`);
    return {
      metrics: { split: o.split, model: { stage: o.from, version: input.version.version }, ...metrics },
      headline: { [`${o.split}_accuracy`]: metrics.accuracy, [`${o.split}_loss`]: metrics.loss },
    };
  },
};
