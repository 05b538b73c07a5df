import * as tf from '@tensorflow/tfjs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { initWasmBackend } from '../../../src/backend/wasm/init.js';
import { describeError, maxError, seededTensor } from './helpers.js';

// The wasm module starts once per process, so this file starts it threaded and checks that
// the pool exists, that its results are right, and (by returning at all under the test runner)
// that its idle threads do not keep Node alive.

test('initWasmBackend({threads: 2}) runs XNNPACK on two threads with the training kernels', async () => {
  const info = await initWasmBackend({ threads: 2 });
  assert.is(tf.getBackend(), 'wasm');
  assert.is(info.threads, 2);
  assert.ok(info.simd);
  assert.ok(tf.getKernel(tf.Conv2DBackpropFilter, 'wasm') != null);
});

test('threaded results equal the single-threaded formula (matMul, conv2d and its gradients)', () => {
  const a = seededTensor([64, 96], 1);
  const b = seededTensor([96, 80], 2);
  const c = tf.matMul(a, b);
  // Reference by broadcasting, no GEMM involved.
  const ref = tf.sum(tf.mul(a.reshape([64, 96, 1]), b.reshape([1, 96, 80])), 1);
  let e = maxError(c.dataSync(), ref.dataSync());
  assert.ok(e.rel < 1e-5, `matMul: ${describeError(e)}`);

  const x = seededTensor([8, 12, 12, 16], 3);
  const w = seededTensor([3, 3, 16, 24], 4);
  const [dx, dw] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.conv2d(p as tf.Tensor4D, q as tf.Tensor4D, 1, 'same').square().sum())([x, w]);
  // d/dW of sum(conv^2) = 2 * backpropFilter(x, conv): check one tap by direct sum.
  const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same');
  const tap = tf.sum(tf.mul(x.reshape([8 * 12 * 12, 16, 1]), y.mul(2).reshape([8 * 12 * 12, 1, 24])), 0);
  const centre = dw.slice([1, 1, 0, 0], [1, 1, 16, 24]).reshape([16, 24]);
  e = maxError(centre.dataSync(), tap.dataSync());
  assert.ok(e.rel < 1e-4, `dW centre tap: ${describeError(e)}`);
  assert.ok(dx.shape.join() === x.shape.join());
  tf.dispose([a, b, c, ref, x, w, dx, dw, y, tap, centre]);
});

test.run();
