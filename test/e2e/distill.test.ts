import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { cli, fixture, removeTempDirs, tempDir } from '../helpers.js';

test.after(removeTempDirs);

test('Fashion-MNIST subset through the CLI: teacher, then distill with its baseline; a second run reuses both', async () => {
  const store = await tempDir();
  const run = await cli(['run', fixture('fashion-distill-subset.yaml'), '--store', store]);
  assert.is(run.code, 0, run.stderr);
  assert.match(run.stdout, 'teacher logits computed once for 1,800 training samples');
  assert.match(run.stdout, '(inputs are fixed: no augmentation)');
  assert.match(run.stdout, /student test accuracy 0\.\d+ vs baseline 0\.\d+ \([+-]\d+\.\d+ points\)/);
  assert.match(run.stdout, /✔ student: v1 .*test_accuracy .*baseline_accuracy .*teacher_accuracy .*agreement .*parameters 6,370/);

  const m = JSON.parse(await readFile(join(store, 'fashion-distill-subset', 'student', 'v1', 'metrics.json'), 'utf8'));
  const teacher = JSON.parse(await readFile(join(store, 'fashion-distill-subset', 'teacher', 'v1', 'metrics.json'), 'utf8'));
  assert.is(m.teacher.test.accuracy, teacher.test.accuracy);
  assert.is(m.teacher.parameters, teacher.parameters);
  // Floors far below what these nets reach (teacher ~0.77, students ~0.6 on 500 test images),
  // to catch a broken pipeline, not to measure distillation: bench/distill does that.
  assert.ok(m.student.test.accuracy >= 0.4, `student ${m.student.test.accuracy}`);
  assert.ok(m.baseline.test.accuracy >= 0.4, `baseline ${m.baseline.test.accuracy}`);
  assert.ok(m.agreement >= 0.4, `agreement ${m.agreement}`);
  assert.is(m.student.test.samples, 500);
  assert.is(m.gain, m.student.test.accuracy - m.baseline.test.accuracy);

  const again = await cli(['run', fixture('fashion-distill-subset.yaml'), '--store', store]);
  assert.is(again.code, 0, again.stderr);
  assert.match(again.stdout, '• student (distill): reused v1');
  assert.match(again.stdout, '2 reused');
  assert.not.match(again.stdout, 'teacher logits computed');
});

test.run();
