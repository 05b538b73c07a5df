import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ManifestDraft } from '../src/artifacts/manifest.js';
import { TerminalReporter } from '../src/report/terminal.js';
import type { TrainingObserver } from '../src/train/progress.js';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const BIN = join(ROOT, 'bin', 'pipeline.js');
export const fixture = (name: string) => join(ROOT, 'test', 'fixtures', name);

const made: string[] = [];
export async function tempDir(prefix = 'tfjs-pipeline-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
export async function removeTempDirs(): Promise<void> {
  // A command that a failed test left running (e.g. held at a fault point) would keep this process
  // from exiting and keep writing into the folders: it goes first.
  await Promise.all([...started].map((child) => new Promise((resolve) => (child.once('close', resolve), child.kill('SIGKILL')))));
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the real `pipeline` command, as a user would. */
export function cli(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export interface RunningCli {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved as they came. */
  output(): string;
  /** Resolves once the output matches (rejects if the process ends first). */
  waitFor(pattern: RegExp): Promise<void>;
  /** Resolves when the process has ended. */
  ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Commands startCli started that have not ended yet. */
const started = new Set<ChildProcess>();

/** Starts the real `pipeline` command without waiting for it: to stop or kill it at some point. */
export function startCli(args: string[], env: Record<string, string> = {}): RunningCli {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  started.add(child);
  child.once('close', () => started.delete(child));
  let output = '';
  const watchers: { pattern: RegExp; resolve: () => void }[] = [];
  const onData = (d: Buffer) => {
    output += d;
    for (const w of watchers.filter((w) => w.pattern.test(output))) {
      watchers.splice(watchers.indexOf(w), 1);
      w.resolve();
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    output: () => output,
    waitFor: (pattern) =>
      new Promise<void>((resolve, reject) => {
        if (pattern.test(output)) return resolve();
        watchers.push({ pattern, resolve });
        void ended.then(() => reject(new Error(`the command ended before printing ${pattern}:\n${output}`)));
      }),
    ended,
  };
}

/** Serves a folder on loopback, as a static file server in front of a browser app would. */
export async function serveFolder(dir: string): Promise<{ url: string; server: Server }> {
  const server = createServer(async (req, res) => {
    try {
      res.end(await readFile(join(dir, decodeURIComponent(req.url!.slice(1)))));
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Awaits `fn`, which must reject with a message containing `pattern` (or matching it); returns the error. */
export async function rejects(fn: () => Promise<unknown>, pattern: string | RegExp): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    const message = (err as Error)?.message ?? String(err);
    if (typeof pattern === 'string' ? !message.includes(pattern) : !pattern.test(message)) {
      throw new Error(`rejected with:\n${message}\nexpected: ${pattern}`);
    }
    return err as Error;
  }
  throw new Error(`resolved; expected a rejection with ${pattern}`);
}

/**
 * A quiet reporter that keeps the warnings and info lines it gets and, like a Ctrl-C, raises `stop`
 * once stage `stopAt.stage` has ended `stopAt.epochs` epochs, counted across its training loops
 * (distill: the baseline's, then the student's). Pass `stopRequested: () => reporter.stop`.
 */
export class RecordingReporter extends TerminalReporter {
  readonly warnings: string[] = [];
  readonly infos: string[] = [];
  stop = false;
  private ended = 0;

  constructor(private readonly stopAt?: { stage: string; epochs: number }) {
    super({ quiet: true });
  }

  override warning(message: string): void {
    this.warnings.push(message);
  }

  override observerFor(stage = ''): TrainingObserver {
    const base = super.observerFor();
    return {
      ...base,
      epochEnd: (logs, epochs, note) => {
        base.epochEnd(logs, epochs, note);
        if (this.stopAt?.stage === stage && ++this.ended >= this.stopAt.epochs) this.stop = true;
      },
      info: (message) => void this.infos.push(`${stage}: ${message}`),
    };
  }
}

/** A minimal manifest draft for store tests: a train stage with this fingerprint and no inputs. */
export function manifestDraft(fingerprint: string): ManifestDraft {
  const now = new Date().toISOString();
  return {
    kind: 'train',
    fingerprint,
    fingerprintDetails: { config: '', stages: {}, data: {}, files: {}, seed: 1, code: '' },
    config: {},
    inputs: { stages: {}, data: {} },
    seed: 1,
    backend: 'cpu',
    libraries: {},
    timings: { startedAt: now, finishedAt: now, durationMs: 0 },
    runId: `run-${fingerprint}`,
    metrics: {},
  };
}
