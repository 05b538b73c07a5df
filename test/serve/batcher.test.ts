import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Batcher, type BatchOptions } from '../../src/serve/batcher.js';
import { ServeError } from '../../src/serve/status.js';

// The batcher with a fake model (output = 10 x input, one value per example, after a delay), so
// merging, limits, timeouts and errors are checked exactly and fast.

interface Run {
  rows: number;
  requests: number;
  at: number;
}

function fakeModel(delayMs: number, fail?: (rows: number) => boolean) {
  const runs: Run[] = [];
  const t0 = performance.now();
  const run = async (values: Float32Array, rows: number, requests: number) => {
    runs.push({ rows, requests, at: performance.now() - t0 });
    await new Promise((r) => setTimeout(r, delayMs));
    if (fail?.(rows)) throw new Error(`model failed on ${rows} rows`);
    return { shape: [rows, 1], values: values.map((v) => v * 10) };
  };
  return { run, runs };
}

const options = (o: Partial<BatchOptions>): BatchOptions => ({ maxBatchSize: 8, batchTimeoutMicros: 0, maxEnqueuedBatches: 4, ...o });
const rows = (...v: number[]) => Float32Array.from(v);

test('timeout 0: a lone request runs at once; requests arriving during a run form the next batch, each gets its rows', async () => {
  const model = fakeModel(20);
  const b = new Batcher(model.run, 1, options({}), 'model "m" version 1');
  const first = b.submit(rows(1), 1);
  await new Promise((r) => setTimeout(r, 5));
  const later = [b.submit(rows(2, 3), 2), b.submit(rows(4), 1), b.submit(rows(5, 6, 7), 3)];
  const [a, ...rest] = await Promise.all([first, ...later]);
  assert.equal([...a.values], [10]);
  assert.equal(rest.map((r) => [...r.values]), [[20, 30], [40], [50, 60, 70]]);
  assert.equal(rest.map((r) => r.shape), [[2, 1], [1, 1], [3, 1]]);
  assert.equal(model.runs.map((r) => [r.rows, r.requests]), [[1, 1], [6, 3]]);
});

test('max batch size: batches never exceed it and requests are never split; a larger request runs alone', async () => {
  const model = fakeModel(5);
  const b = new Batcher(model.run, 1, options({ maxBatchSize: 4 }), 'm');
  const results = await Promise.all([
    b.submit(rows(1), 1),
    b.submit(rows(2, 2, 2), 3),
    b.submit(rows(3, 3), 2),
    b.submit(rows(4), 1),
    b.submit(rows(5, 5, 5, 5, 5, 5), 6),
    b.submit(rows(6), 1),
  ]);
  assert.equal(model.runs.map((r) => r.rows), [4, 3, 6, 1]);
  assert.equal(results.map((r) => r.values[0]), [10, 20, 30, 40, 50, 60]);
});

test('batch timeout: a batch waits up to batch_timeout_micros for more requests, and runs early when full', async () => {
  const model = fakeModel(1);
  const b = new Batcher(model.run, 1, options({ maxBatchSize: 3, batchTimeoutMicros: 40_000 }), 'm');
  const t0 = performance.now();
  const first = b.submit(rows(1), 1);
  await new Promise((r) => setTimeout(r, 10));
  const second = b.submit(rows(2), 1);
  await Promise.all([first, second]);
  assert.ok(performance.now() - t0 >= 38, `waited ${performance.now() - t0} ms for company`);
  assert.equal(model.runs.map((r) => r.requests), [2]);

  const t1 = performance.now();
  await Promise.all([b.submit(rows(1), 1), b.submit(rows(2), 1), b.submit(rows(3), 1)]);
  assert.ok(performance.now() - t1 < 30, 'a full batch does not wait');
});

test('a full queue answers UNAVAILABLE (503); a request past its deadline is dropped with DEADLINE_EXCEEDED (504)', async () => {
  const model = fakeModel(30);
  const b = new Batcher(model.run, 1, options({ maxBatchSize: 2, maxEnqueuedBatches: 2 }), 'model "m" version 1');
  const running = b.submit(rows(0), 1);
  await new Promise((r) => setTimeout(r, 5));
  const queued = [b.submit(rows(1, 1), 2), b.submit(rows(2, 2), 2)];
  const full = await b.submit(rows(3), 1).catch((e) => e);
  assert.instance(full, ServeError);
  assert.is(full.httpStatus, 503);
  assert.match(full.message, 'the batch queue of model "m" version 1 is full (rows waiting: 4, limit: 4');
  await Promise.all([running, ...queued]);

  const slow = b.submit(rows(0), 1);
  await new Promise((r) => setTimeout(r, 5));
  const expired = b.submit(rows(9), 1, performance.now() + 10).catch((e) => e);
  await slow;
  const err = await expired;
  assert.is(err.code, 'DEADLINE_EXCEEDED');
  assert.is(err.httpStatus, 504);
  assert.is(model.runs.length, 4, 'the expired request never ran');
});

test('a failing run rejects every request in its batch; the next batch still runs', async () => {
  const model = fakeModel(10, (n) => n === 3);
  const b = new Batcher(model.run, 1, options({}), 'm');
  const first = b.submit(rows(1), 1);
  await new Promise((r) => setTimeout(r, 2));
  const doomed = [b.submit(rows(2), 1), b.submit(rows(3, 3), 2)].map((p) => p.catch((e: Error) => e.message));
  await first;
  assert.equal(await Promise.all(doomed), ['model failed on 3 rows', 'model failed on 3 rows']);
  assert.equal([...(await b.submit(rows(4), 1)).values], [40]);
});

test.run();
