import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { QUEUE_CPU, QUEUE_GPU, queueFor, redisConnection } from '../../src/engine/queue.js';

// The queue executor's pure parts; test/e2e/queue.test.ts runs it with real Redis and workers.

test('GPU backends route to the gpu queue, the rest (auto included) to the cpu one', () => {
  assert.is(queueFor('webgpu'), QUEUE_GPU);
  assert.is(queueFor('tensorflow-gpu'), QUEUE_GPU);
  for (const b of ['auto', 'cpu', 'wasm', 'onnxruntime', 'tensorflow'] as const) assert.is(queueFor(b), QUEUE_CPU);
});

test('--redis: URL parts become connection options; anything else names --redis and the form', () => {
  assert.equal(redisConnection('redis://u:p%40ss@10.0.0.2:6380/3'), {
    host: '10.0.0.2', port: 6380, username: 'u', password: 'p@ss', db: 3, maxRetriesPerRequest: null,
  });
  assert.is(redisConnection('redis://localhost').port, 6379);
  assert.throws(() => redisConnection('localhost:6379'), /--redis: "localhost:6379" is not a redis:\/\/ URL: write redis:\/\/host:port/);
  assert.throws(() => redisConnection('redis://h:1/x'), /the path must be a database number/);
});

test.run();
