import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { expandGrid, parseGrid, rankRuns, MAX_SWEEP_RUNS, type SweepResult, type SweepRun } from '../../src/engine/sweep.js';
import { BIN, ROOT, cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

test.after(removeTempDirs);

function throws(fn: () => unknown, message: string): void {
  try {
    fn();
    assert.unreachable(`accepted; expected "${message}"`);
  } catch (err) {
    assert.match((err as Error).message, message);
  }
}

test('--grid values split at the commas between YAML values, each kept as written', () => {
  const axes = parseGrid(['teacher.optimizer.adam.learningRate=1e-3, 3e-4', 'net.units=[8, 16],[32]', 'net.activation="a,b",relu']);
  assert.equal(axes, [
    { key: 'teacher.optimizer.adam.learningRate', values: ['1e-3', '3e-4'] },
    { key: 'net.units', values: ['[8, 16]', '[32]'] },
    { key: 'net.activation', values: ['"a,b"', 'relu'] },
  ]);
});

test('bad --grid arguments are refused, saying what is wrong', () => {
  throws(() => parseGrid(['teacher.epochs']), 'expected stage.key=value1,value2');
  throws(() => parseGrid(['teacher.epochs=1,,2']), 'teacher.epochs=1,,2:');
  throws(() => parseGrid(['teacher.epochs=1,2,1']), 'the value 1 is listed twice');
  throws(() => parseGrid(['a.b=1', 'a.b=2']), '--grid a.b: given twice');
  throws(() => parseGrid([]), 'give at least one --grid');
  const many = Array.from({ length: 32 }, (_, i) => i).join(',');
  throws(() => parseGrid([`a.b=${many}`, `a.c=${many}`]), `expand to 1024 runs (32 x 32); at most ${MAX_SWEEP_RUNS}`);
});

test('the runs are the cartesian product, the first grid varying slowest', () => {
  assert.equal(expandGrid(parseGrid(['a.x=1,2', 'b.y=p,q,r'])), [
    ['a.x=1', 'b.y=p'], ['a.x=1', 'b.y=q'], ['a.x=1', 'b.y=r'],
    ['a.x=2', 'b.y=p'], ['a.x=2', 'b.y=q'], ['a.x=2', 'b.y=r'],
  ]);
});

test('the leaderboard: best first (lowest for a loss), failed runs after, unranked', () => {
  const run = (index: number, metric: number | undefined, status: SweepRun['status'] = 'succeeded'): SweepRun => ({
    index, params: {}, overrides: [], status, durationMs: 0, metric,
  });
  const runs = [run(1, 0.9), run(2, undefined, 'failed'), run(3, 0.95), run(4, 0.9)];
  assert.equal(rankRuns(runs, { name: 'test_accuracy', order: 'desc' }).map((r) => [r.index, r.rank]), [[3, 1], [1, 2], [4, 3], [2, undefined]]);
  assert.equal(rankRuns(runs, { name: 'test_loss', order: 'asc' }).map((r) => r.index), [1, 4, 3, 2]);
});

test('a sweep of 4 runs, 2 at a time: the shared teacher is computed once, the leaderboard is sorted and written', async () => {
  const store = await tempDir();
  const result = await cli([
    'sweep', fixture('distill-iris.yaml'), '--store', store, '--parallel', '2',
    '--grid', 'student.temperature=2,4', '--grid', 'student.alpha=0.3,0.7', '--set', 'student.epochs=10',
  ]);
  assert.is(result.code, 0, result.stderr + result.stdout);
  const records = await new LocalArtifactStore(store).listRuns('distill-iris');
  assert.is(records.length, 4);
  const sweepId = records[0].sweep;
  assert.ok(sweepId && records.every((r) => r.sweep === sweepId && r.status === 'succeeded'), 'every run names the sweep');
  const teacher = records.map((r) => r.stages.find((s) => s.stage === 'teacher')!.status).sort();
  assert.equal(teacher, ['ran', 'reused', 'reused', 'reused']);
  assert.equal(await readdir(join(store, 'distill-iris', 'teacher')), ['v1']);
  assert.equal(
    records.map((r) => r.overrides.join(' ')).sort(),
    ['2,0.3', '2,0.7', '4,0.3', '4,0.7'].map((v) => {
      const [t, a] = v.split(',');
      return `student.epochs=10 student.temperature=${t} student.alpha=${a}`;
    }),
  );
  const path = /leaderboard: (.*)$/m.exec(result.stdout)![1];
  assert.is(path, join(store, 'distill-iris', 'sweeps', `${sweepId}.json`));
  const board: SweepResult = JSON.parse(await readFile(path, 'utf8'));
  assert.is(board.id, sweepId);
  assert.equal(board.metric, { name: 'test_accuracy', order: 'desc' });
  assert.equal(board.runs.map((r) => r.rank), [1, 2, 3, 4]);
  const metrics = board.runs.map((r) => r.metric!);
  assert.equal(metrics, [...metrics].sort((a, b) => b - a));
  for (const run of board.runs) {
    const record = records.find((r) => r.id === run.run)!;
    assert.is(run.metric, record.stages.find((s) => s.stage === 'student')!.metrics!.test_accuracy);
    assert.is(run.metricStage, 'student');
  }
  // The printed table: best first.
  const rows = result.stdout.split('\n').filter((l) => /^ {2}\d+ /.test(l));
  assert.equal(rows.map((l) => l.trim().split(/\s+/)[0]), ['1', '2', '3', '4']);
});

test('Ctrl-C: no further run starts, the running one stops, and the leaderboard says so (exit 1)', async () => {
  const store = await tempDir();
  const sweep = spawn(process.execPath, [BIN, 'sweep', fixture('distill-iris.yaml'), '--store', store, '--parallel', '1', '--grid', 'student.alpha=0.1,0.5,0.9'], { cwd: ROOT });
  let stdout = '';
  sweep.stdout.on('data', (d: Buffer) => (stdout += d));
  // Once the first run has written its record it has its signal handlers: stop the sweep then.
  const runs = new LocalArtifactStore(store);
  while (!(await runs.listRuns('distill-iris')).length) await new Promise((r) => setTimeout(r, 50));
  sweep.kill('SIGINT');
  const code = await new Promise((resolve) => sweep.on('close', resolve));
  assert.is(code, 1, stdout);
  const board: SweepResult = JSON.parse(await readFile(/leaderboard: (.*)$/m.exec(stdout)![1], 'utf8'));
  assert.equal(board.runs.map((r) => r.status), ['interrupted', 'interrupted', 'interrupted']);
  assert.equal(board.runs.map((r) => r.error?.startsWith('not started')), [false, true, true]);
  // The first run was stopped, not left running: its record says so, and nothing half-done was published.
  assert.equal((await runs.listRuns('distill-iris')).map((r) => r.status), ['interrupted']);
});

test('a grid value the pipeline refuses stops the sweep before any run, exit 2', async () => {
  const store = await tempDir();
  const result = await cli(['sweep', fixture('distill-iris.yaml'), '--store', store, '--grid', 'student.temprature=2,4']);
  assert.is(result.code, 2);
  assert.match(result.stderr, '--grid: run 1 of 2 (student.temprature=2) is not a valid pipeline');
  assert.match(result.stderr, 'did you mean "temperature"?');
  const metric = await cli(['sweep', fixture('distill-iris.yaml'), '--store', store, '--grid', 'student.alpha=0.3', '--metric', 'studnt.test_accuracy']);
  assert.is(metric.code, 2);
  assert.match(metric.stderr, 'no stage "studnt"');
  assert.equal(await readdir(store), []);
});

test.run();
