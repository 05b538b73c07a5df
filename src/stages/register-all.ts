import { distillStage } from './distill.js';
import { evaluateStage } from './evaluate.js';
import { exportStage } from './export.js';
import { pruneStage } from './prune.js';
import { quantizeStage } from './quantize.js';
import { registerStageKind, listStageKinds } from './registry.js';
import { trainStage } from './train.js';
import type { StageKind } from './types.js';

// Every stage kind, registered explicitly in one place (tfjs's register_all_kernels pattern).
const ALL: StageKind<never>[] = [trainStage as StageKind<never>, evaluateStage as StageKind<never>, distillStage as StageKind<never>,
  pruneStage as StageKind<never>, quantizeStage as StageKind<never>, exportStage as StageKind<never>];

let registered = false;

export function registerAllStageKinds(): void {
  if (registered) return;
  registered = true;
  for (const kind of ALL) registerStageKind(kind as unknown as StageKind);
}

export { listStageKinds };
