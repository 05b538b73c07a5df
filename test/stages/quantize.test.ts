import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runPipeline } from '../../src/engine/run.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { loadModelOutput } from '../../src/stages/model-output.js';
import { digitsWorkspace } from '../compress/digits-workspace.js';
import { removeTempDirs } from '../helpers.js';

const quiet = new TerminalReporter({ quiet: true });
test.after(removeTempDirs);

// train -> quantize (uint8) -> evaluate, and train -> prune -> quantize (uint8), on the digits.
const ws = await digitsWorkspace(['mlp', 'float-uint8', 'half', 'pruned', 'small', 'check'], { check: { from: 'float-uint8' } });
await runPipeline(await loadPipeline(ws.file), { store: ws.store, reporter: quiet });
const open = async (stage: string) => {
  const version = await ws.store.openVersion('digits-compress', stage);
  return { version, metrics: JSON.parse(await readFile(join(version.dir, 'metrics.json'), 'utf8')) };
};

test('a uint8 model evaluates within 1 point of the float one on the digits; evaluate reads it', async () => {
  const float = await open('mlp');
  const q = await open('float-uint8');
  const check = await open('check');
  assert.ok(float.metrics.test.accuracy > 0.9);
  assert.is(q.metrics.test.before.accuracy, float.metrics.test.accuracy);
  assert.ok(Math.abs(q.metrics.test.after.accuracy - float.metrics.test.accuracy) <= 0.01, JSON.stringify(q.metrics.test.after.accuracy));
  // The evaluate stage loads the quantized files (our loader, dequantized by tfjs) and agrees.
  assert.is(check.metrics.accuracy, q.metrics.test.after.accuracy);
});

test('the manifest carries the converter\'s entries; kernels uint8, biases float32; errors within scale/2', async () => {
  const { version, metrics } = await open('float-uint8');
  const json = JSON.parse(await readFile(join(version.dir, 'model.json'), 'utf8'));
  const entries = json.weightsManifest[0].weights as tf.io.WeightsManifestEntry[];
  assert.equal(entries.map((e) => [e.dtype, e.quantization?.dtype ?? null]), [
    ['float32', 'uint8'], ['float32', null], ['float32', 'uint8'], ['float32', null],
  ]);
  assert.equal(metrics.encodings, { uint8: 2, uint16: 0, float16: 0, float32: 2 });
  for (const t of metrics.tensors) {
    if (t.encoding === 'float32') assert.is(t.maxAbsError, 0);
    else assert.ok(t.maxAbsError <= t.scale / 2 + 1e-7, `${t.name}: ${t.maxAbsError} > ${t.scale / 2}`);
  }
  // 4 bytes a kernel weight become 1: raw size falls by nearly 4x.
  assert.ok(metrics.size.rawRatio > 3.8 && metrics.size.rawRatio < 4, `${metrics.size.rawRatio}`);
  assert.ok(metrics.size.gzipRatio > 3, `${metrics.size.gzipRatio}`);
  assert.ok(await readFile(join(version.dir, 'input-spec.json')));
});

test('pruned then quantized: every exact zero survives, and the gzip size shrinks much further', async () => {
  const { metrics } = await open('small');
  const pruned = await open('pruned');
  const kernel = metrics.tensors.find((t: { name: string }) => t.name.endsWith('kernel'));
  assert.ok(kernel.zerosBefore >= Math.round(0.8 * 8192));
  for (const t of metrics.tensors) assert.is(t.zerosKept, t.zerosBefore, t.name);
  assert.ok(Math.abs(metrics.test.after.accuracy - pruned.metrics.test.after.accuracy) <= 0.01);
  const float = await open('float-uint8');
  assert.ok(metrics.size.after.gzip < 0.6 * float.metrics.size.after.gzip, 'pruning did not help gzip');
  assert.ok(pruned.metrics.size.before.gzip / metrics.size.after.gzip > 6, `${pruned.metrics.size.before.gzip} / ${metrics.size.after.gzip}`);
});

test('the stored quantized model loads with stock tf.loadLayersModel over HTTP and predicts as our loader does', async () => {
  const { version } = await open('small');
  const server = createServer(async (req, res) => {
    try {
      res.end(await readFile(join(version.dir, decodeURIComponent(req.url!.slice(1)))));
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const stock = await tf.loadLayersModel(`http://127.0.0.1:${(server.address() as AddressInfo).port}/model.json`);
    const mine = await loadModelOutput(version.dir);
    const x = tf.randomUniform([4, 8, 8, 1], 0, 1, 'float32', 2);
    assert.equal(Array.from((stock.predict(x) as tf.Tensor).dataSync()), Array.from((mine.predict(x) as tf.Tensor).dataSync()));
  } finally {
    server.close();
  }
});

test('float16, with a per-layer pattern that keeps the output layer float32', async () => {
  const { version, metrics } = await open('half');
  const json = JSON.parse(await readFile(join(version.dir, 'model.json'), 'utf8'));
  assert.equal(
    json.weightsManifest[0].weights.map((e: tf.io.WeightsManifestEntry) => [e.name, e.quantization ?? null]),
    [['hidden/kernel', { dtype: 'float16', original_dtype: 'float32' }], ['hidden/bias', null], ['logits/kernel', null], ['logits/bias', null]],
  );
  assert.equal(metrics.encodings, { uint8: 0, uint16: 0, float16: 1, float32: 3 });
  assert.ok(Math.abs(metrics.test.after.accuracy - metrics.test.before.accuracy) <= 0.003);
});

test.run();
