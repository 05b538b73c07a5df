import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { QUEUE_CPU, QUEUE_GPU, queueFor, redisConnection } from '../../src/engine/queue.js';
import type { ResolvedStage } from '../../src/spec/pipeline.js';

// The queue executor's pure parts; test/e2e/queue.test.ts runs it with real Redis and workers.

const stage = (resources?: ResolvedStage['resources']) =>
  ({ name: 's', kind: {} as ResolvedStage['kind'], config: {}, deps: [], data: [], ...(resources ? { resources } : {}) }) satisfies ResolvedStage;

test('GPU backends route to the gpu queue, the rest (auto included) to the cpu one', () => {
  assert.equal(queueFor(stage(), 'webgpu'), { queue: QUEUE_GPU, backend: undefined });
  assert.equal(queueFor(stage(), 'cpu', 'tensorflow-gpu'), { queue: QUEUE_GPU, backend: 'tensorflow-gpu' });
  for (const b of ['auto', 'cpu', 'wasm', 'onnxruntime', 'tensorflow'] as const) assert.is(queueFor(stage(), b).queue, QUEUE_CPU);
});

test('resources.gpu routes a stage: 1 to the gpu queue on any backend; 0 in a GPU pipeline to the cpu queue on auto', () => {
  assert.equal(queueFor(stage({ gpu: 1 }), 'auto'), { queue: QUEUE_GPU, backend: undefined });
  assert.equal(queueFor(stage({ gpu: 0 }), 'webgpu'), { queue: QUEUE_CPU, backend: 'auto' });
  assert.equal(queueFor(stage({ gpu: 0 }), 'cpu', 'webgpu'), { queue: QUEUE_CPU, backend: 'auto' });
  assert.equal(queueFor(stage({ cpu: 2 }), 'cpu'), { queue: QUEUE_CPU, backend: undefined });
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
