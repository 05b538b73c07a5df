import type { RunRecord } from '../artifacts/manifest.js';
import type { StoredVersion } from '../artifacts/store.js';
import type { BackendSelection } from '../backend/select.js';
import type { RunReporter } from '../engine/reporter.js';
import type { StagePlan } from '../engine/run.js';
import type { Pipeline } from '../spec/pipeline.js';
import type { EpochLogs, TrainingObserver } from '../train/progress.js';

// `pipeline run --log-format json`: one JSON object per line and per event, for CI systems that
// parse logs. Every object has `event` and `time` (ISO 8601); the rest depends on the event:
//
//   run-start     pipeline, file, overrides, stages: [{stage, kind, action, reason, fingerprint}]
//   backend       backend, reason, adapter?
//   stage-reused  stage, kind, version, reason, fingerprint
//   stage-start   stage, kind, index (1-based), total, reason
//   epoch         stage, epoch, epochs, seconds, metrics: {loss, accuracy, val_loss, ...}, note?
//   info          stage, message
//   stage-done    stage, kind, version, durationMs, metrics (the headline)
//   stage-failed  stage, kind, durationMs, error
//   warning       message
//   queue         message (`run --executor queue`: what the workers report, as the text lines say it)
//   run-end       run, status, durationMs, record, report?, error?, stages: [{stage, status, version?}]
//
// No progress bars: a batch-level event stream would only bloat CI logs. Metrics that are not
// finite (no validation split) are null, as JSON has no NaN.

export class JsonLinesReporter implements RunReporter {
  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {}

  private emit(event: string, fields: Record<string, unknown>): void {
    this.out.write(`${JSON.stringify({ event, time: new Date().toISOString(), ...fields })}\n`);
  }

  /** A line of `run --executor queue`, which follows workers instead of running stages. */
  queue(message: string): void {
    this.emit('queue', { message });
  }

  runStart(pipeline: Pipeline, plans: StagePlan[]): void {
    this.emit('run-start', {
      pipeline: pipeline.name,
      file: pipeline.file,
      overrides: pipeline.overrides,
      stages: plans.map((p) => ({
        stage: p.stage,
        kind: p.kind,
        action: p.action,
        reason: p.reason,
        fingerprint: p.fingerprint.fingerprint,
        ...(p.cached ? { version: p.cached.version } : {}),
      })),
    });
  }

  backendSelected(backend: BackendSelection): void {
    this.emit('backend', { backend: backend.name, reason: backend.reason, ...(backend.details.adapter ? { adapter: backend.details.adapter } : {}) });
  }

  stageReused(plan: StagePlan, version: StoredVersion): void {
    this.emit('stage-reused', { stage: plan.stage, kind: plan.kind, version: version.version, reason: plan.reason, fingerprint: plan.fingerprint.fingerprint });
  }

  stageStart(plan: StagePlan, index: number, total: number): void {
    this.emit('stage-start', { stage: plan.stage, kind: plan.kind, index: index + 1, total, reason: plan.reason });
  }

  stageDone(plan: StagePlan, version: StoredVersion, durationMs: number): void {
    this.emit('stage-done', { stage: plan.stage, kind: plan.kind, version: version.version, durationMs, metrics: version.manifest.metrics });
  }

  stageFailed(plan: StagePlan, error: Error, durationMs: number): void {
    this.emit('stage-failed', { stage: plan.stage, kind: plan.kind, durationMs, error: error.message });
  }

  warning(message: string): void {
    this.emit('warning', { message });
  }

  observerFor(stage: string): TrainingObserver {
    return {
      epochStart() {},
      wantsBatchUpdate: () => false,
      batchEnd() {},
      epochEnd: (logs: EpochLogs, epochs: number, note?: string) => {
        const { epoch, seconds, ...metrics } = logs;
        this.emit('epoch', { stage, epoch, epochs, seconds, metrics, ...(note ? { note } : {}) });
      },
      info: (message: string) => this.emit('info', { stage, message }),
    };
  }

  runEnd(record: RunRecord, recordPath: string, reportPath?: string): void {
    this.emit('run-end', {
      run: record.id,
      status: record.status,
      durationMs: record.durationMs,
      record: recordPath,
      ...(reportPath ? { report: reportPath } : {}),
      ...(record.error ? { error: record.error } : {}),
      stages: record.stages.map((s) => ({ stage: s.stage, status: s.status, ...(s.version !== undefined ? { version: s.version } : {}) })),
    });
  }
}
