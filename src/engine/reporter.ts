import type { RunRecord } from '../artifacts/manifest.js';
import type { StoredVersion } from '../artifacts/store.js';
import type { BackendSelection } from '../backend/select.js';
import type { Pipeline } from '../spec/pipeline.js';
import type { TrainingObserver } from '../train/progress.js';
import type { StagePlan } from './run.js';

/** Everything the engine tells the outside world while it runs; the CLI decides how to show it. */
export interface RunReporter {
  runStart(pipeline: Pipeline, plans: StagePlan[]): void;
  backendSelected(backend: BackendSelection): void;
  stageReused(plan: StagePlan, version: StoredVersion): void;
  stageStart(plan: StagePlan, index: number, total: number): void;
  stageDone(plan: StagePlan, version: StoredVersion, durationMs: number): void;
  stageFailed(plan: StagePlan, error: Error, durationMs: number): void;
  observerFor(stage: string): TrainingObserver;
  /** A problem that does not fail the run, e.g. its report could not be written. */
  warning(message: string): void;
  /** `reportPath` is absent when the report could not be written (a warning said why). */
  runEnd(record: RunRecord, recordPath: string, reportPath?: string): void;
}
