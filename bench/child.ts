import { spawn } from 'node:child_process';

// The benchmarks measure each configuration in a fresh Node process (its own tfjs engine, backend
// and heap, so one cell's leftovers cannot slow the next): the script runs itself with
// `--child <request JSON>` and prints its result as one JSON line.

export type ChildOutcome<T> = { ok: true; result: T } | { ok: false; why: string };

/** Runs `script --child request`; the result is the stdout line that starts with `marker`. */
export function runInChild<T>(script: string, request: unknown, marker: string, deadlineMs: number): Promise<ChildOutcome<T>> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, '--child', JSON.stringify(request)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith(marker));
      if (code === 0 && line !== undefined) resolve({ ok: true, result: JSON.parse(line) as T });
      else if (signal === 'SIGKILL') resolve({ ok: false, why: `over the ${Math.round(deadlineMs / 1000)} s deadline` });
      else resolve({ ok: false, why: err.trim().split('\n').slice(-3).join(' | ') || `exit ${code}` });
    });
  });
}
