import type { RunRecord } from '../artifacts/manifest.js';
import type { StoredVersion } from '../artifacts/store.js';
import type { BackendSelection } from '../backend/select.js';
import type { RunReporter } from '../engine/reporter.js';
import type { StagePlan } from '../engine/run.js';
import type { Pipeline } from '../spec/pipeline.js';
import type { EpochLogs, TrainingObserver } from '../train/progress.js';

// Keras-like output: one line per epoch with loss and metrics. On a terminal a progress bar
// redraws the current epoch in place (batch, ETA, running loss and accuracy); without one (CI
// logs) only the finished lines are written, so logs stay readable.

export interface TerminalOptions {
  out?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Warnings go here, so they are seen even when stdout is piped to a file. */
  err?: NodeJS.WritableStream;
  quiet?: boolean;
}

export function formatNumber(value: unknown): string {
  if (typeof value !== 'number') return String(value);
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  return value.toFixed(4);
}

export function formatHeadline(headline: Record<string, unknown> | undefined): string {
  return Object.entries(headline ?? {})
    .map(([k, v]) => `${k} ${formatNumber(v)}`)
    .join(', ');
}

/** Columns padded to their widest cell (the last left ragged), header first. */
export function formatTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [fmt(header), ...rows.map(fmt)];
}

export class TerminalReporter implements RunReporter {
  private readonly out: NonNullable<TerminalOptions['out']>;
  private readonly err: NodeJS.WritableStream;
  private readonly tty: boolean;
  private readonly quiet: boolean;

  constructor(options: TerminalOptions = {}) {
    this.out = options.out ?? process.stdout;
    this.err = options.err ?? process.stderr;
    this.tty = Boolean(this.out.isTTY);
    this.quiet = Boolean(options.quiet);
  }

  private line(text: string): void {
    if (!this.quiet) this.out.write(`${text}\n`);
  }

  runStart(pipeline: Pipeline, plans: StagePlan[]): void {
    const toRun = plans.filter((p) => p.action === 'run').length;
    this.line(`pipeline ${pipeline.name} (${pipeline.file}): ${plans.length} stages, ${toRun} to run, ${plans.length - toRun} cached`);
    if (pipeline.overrides.length) this.line(`  overrides: ${pipeline.overrides.join(' ')}`);
  }

  backendSelected(backend: BackendSelection): void {
    this.line(`backend: ${backend.reason}${backend.details.adapter ? ` [${backend.details.adapter}]` : ''}`);
  }

  stageReused(plan: StagePlan, version: StoredVersion): void {
    this.line(`• ${plan.stage} (${plan.kind}): reused v${version.version}, ${plan.reason} [${plan.fingerprint.fingerprint.slice(0, 12)}]`);
  }

  stageStart(plan: StagePlan, index: number, total: number): void {
    this.line(`▶ ${plan.stage} (${plan.kind}) [${index + 1}/${total}]: running, ${plan.reason}`);
  }

  stageDone(plan: StagePlan, version: StoredVersion, durationMs: number): void {
    this.line(
      `✔ ${plan.stage}: v${version.version} in ${(durationMs / 1000).toFixed(1)}s; ${formatHeadline(version.manifest.metrics)}`,
    );
  }

  stageFailed(plan: StagePlan, _error: Error, durationMs: number): void {
    // The error itself is printed once, by the command, with its exit code.
    this.line(`✖ ${plan.stage}: failed after ${(durationMs / 1000).toFixed(1)}s`);
  }

  warning(message: string): void {
    this.err.write(`warning: ${message}\n`);
  }

  observerFor(): TrainingObserver {
    let epochStarted = 0;
    let lastDraw = 0;
    let current = { epoch: 0, epochs: 0 };
    return {
      epochStart: (epoch, epochs) => {
        epochStarted = Date.now();
        current = { epoch, epochs };
      },
      wantsBatchUpdate: () => this.tty && !this.quiet && Date.now() - lastDraw > 250,
      batchEnd: (batch, batches, runningLoss, runningAccuracy) => {
        lastDraw = Date.now();
        const elapsed = (Date.now() - epochStarted) / 1000;
        const eta = (elapsed / batch) * (batches - batch);
        const width = 24;
        const filled = Math.round((batch / batches) * width);
        const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled ? '>' : ''}${'.'.repeat(width - filled)}`;
        const text =
          `  Epoch ${current.epoch}/${current.epochs} [${bar}] ${batch}/${batches} - ETA ${formatEta(eta)} - ` +
          `loss: ${runningLoss.toFixed(4)} - accuracy: ${runningAccuracy.toFixed(4)}`;
        // A line wider than the terminal wraps, and \r would then redraw only its last part.
        const columns = this.out.columns ?? 80;
        this.out.write(`\r${text.length >= columns ? text.slice(0, columns - 1) : text}\x1b[K`);
      },
      epochEnd: (logs: EpochLogs, epochs: number, note?: string) => {
        if (this.tty && !this.quiet) this.out.write('\r\x1b[K');
        const metrics = ['loss', 'accuracy', 'val_loss', 'val_accuracy']
          .filter((k) => Number.isFinite(logs[k]))
          .map((k) => `${k}: ${logs[k].toFixed(4)}`)
          .join(' - ');
        this.line(`  Epoch ${logs.epoch}/${epochs} - ${logs.seconds.toFixed(1)}s - ${metrics}${note ? ` (${note})` : ''}`);
      },
      info: (message) => this.line(`  ${message}`),
    };
  }

  runEnd(record: RunRecord, recordPath: string, reportPath?: string): void {
    const secs = ((record.durationMs ?? 0) / 1000).toFixed(1);
    const counts = ['ran', 'reused', 'failed', 'skipped']
      .map((s) => [s, record.stages.filter((x) => x.status === s).length] as const)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${n} ${s}`)
      .join(', ');
    this.line(
      `run ${record.id} ${record.status} in ${secs}s (${counts || 'no stages'}); record: ${recordPath}` +
        (reportPath ? `; report: ${reportPath}` : ''),
    );
  }
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
