import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { exists } from '../../src/util/fs.js';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

// `pipeline run --log-format json` as a CI system reads it: stdout holds nothing but JSON lines.

test.after(removeTempDirs);

const store = await tempDir();

type Event = Record<string, any>;

function parseLines(stdout: string): Event[] {
  const lines = stdout.split('\n').filter((l) => l !== '');
  return lines.map((line, i) => {
    try {
      return JSON.parse(line) as Event;
    } catch {
      throw new Error(`stdout line ${i + 1} is not JSON: ${line}`);
    }
  });
}

test('a run: run start, backend, stage start/done, epochs with metrics, info, run end', async () => {
  const result = await cli(['run', fixture('iris.yaml'), '--store', store, '--log-format', 'json']);
  assert.is(result.code, 0, result.stderr);
  const events = parseLines(result.stdout);
  for (const e of events) {
    assert.type(e.event, 'string');
    assert.ok(!Number.isNaN(Date.parse(e.time)), `no ISO time in ${JSON.stringify(e)}`);
  }
  assert.is(events[0].event, 'run-start');
  assert.equal(events[0].stages.map((s: Event) => [s.stage, s.action]), [['net', 'run'], ['check', 'run']]);
  assert.is(events.at(-1)!.event, 'run-end');
  const names = events.map((e) => e.event);
  assert.equal(names.filter((n) => n === 'stage-start').length, 2);
  assert.equal(events.filter((e) => e.event === 'stage-done').map((e) => [e.stage, e.version]), [['net', 1], ['check', 1]]);
  assert.ok(names.includes('backend') && names.includes('info'), names.join(' '));
  const epochs = events.filter((e) => e.event === 'epoch');
  assert.equal(epochs.map((e) => [e.stage, e.epoch, e.epochs]), [['net', 1, 3], ['net', 2, 3], ['net', 3, 3]]);
  for (const e of epochs) for (const k of ['loss', 'accuracy', 'val_loss', 'val_accuracy']) assert.type(e.metrics[k], 'number');
  const done = events.find((e) => e.event === 'stage-done' && e.stage === 'net')!;
  assert.type(done.metrics.test_accuracy, 'number');
  const end = events.at(-1)!;
  assert.is(end.status, 'succeeded');
  assert.ok(await exists(end.record), end.record);
  assert.ok(await exists(end.report), `no report at ${end.report}`);
});

test('a cached run reports stage-reused events', async () => {
  const result = await cli(['run', fixture('iris.yaml'), '--store', store, '--log-format', 'json']);
  assert.is(result.code, 0, result.stderr);
  const events = parseLines(result.stdout);
  assert.equal(events.filter((e) => e.event === 'stage-reused').map((e) => [e.stage, e.version]), [['net', 1], ['check', 1]]);
  assert.not.ok(events.some((e) => e.event === 'epoch' || e.event === 'stage-start'));
});

test('a failing stage: stage-failed with the error, run-end failed, exit 1; stdout stays JSON only', async () => {
  const result = await cli([
    'run', fixture('iris.yaml'), '--store', store, '--log-format', 'json', '--set', 'net.optimizer={sgd: {learningRate: 1e30}}',
  ]);
  assert.is(result.code, 1);
  const events = parseLines(result.stdout);
  const failed = events.find((e) => e.event === 'stage-failed');
  assert.ok(failed, result.stdout);
  assert.is(failed!.stage, 'net');
  assert.match(failed!.error, 'training diverged');
  const end = events.at(-1)!;
  assert.is(end.event, 'run-end');
  assert.is(end.status, 'failed');
  assert.equal(end.stages.map((s: Event) => s.status), ['failed', 'skipped']);
  assert.match(result.stderr, 'training diverged');
});

test.run();
