import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { planPipeline, runPipeline } from '../../src/engine/run.js';
import { InputError } from '../../src/errors.js';
import { TerminalReporter } from '../../src/report/terminal.js';
import { SpecError } from '../../src/spec/diagnostics.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { RecordingReporter, fixture, removeTempDirs, tempDir } from '../helpers.js';

const quiet = new TerminalReporter({ quiet: true });
const FILE = fixture('distill-iris.yaml');

async function store(): Promise<LocalArtifactStore> {
  return new LocalArtifactStore(await tempDir());
}
const statuses = (record: { stages: { stage: string; status: string; version?: number }[] }) =>
  Object.fromEntries(record.stages.map((s) => [s.stage, `${s.status}@v${s.version}`]));
const readJson = async (dir: string, file: string) => JSON.parse(await readFile(join(dir, file), 'utf8'));

test.after(removeTempDirs);

test('teacher, then student: every metric, the teacher re-measured exactly, files, and a second run reuses both', async () => {
  const s = await store();
  const first = await runPipeline(await loadPipeline(FILE), { store: s, reporter: quiet });
  assert.equal(statuses(first), { teacher: 'ran@v1', student: 'ran@v1' });
  const teacher = await s.openVersion('distill-iris', 'teacher');
  const student = await s.openVersion('distill-iris', 'student');
  const m = await readJson(student.dir, 'metrics.json');

  assert.is(m.student.parameters, 4 * 4 + 4 + 4 * 3 + 3);
  assert.is(m.teacher.parameters, 4 * 32 + 32 + 32 * 3 + 3);
  assert.is(m.student.test.samples, 30);
  assert.ok(m.student.test.accuracy >= 0.8, `student test accuracy ${m.student.test.accuracy}`);
  assert.is(m.student.test.confusionMatrix.length, 3);
  assert.is(m.baseline.test.samples, 30);
  assert.is(m.baseline.parameters, m.student.parameters);
  assert.is(m.gain, m.student.test.accuracy - m.baseline.test.accuracy);
  assert.ok(m.agreement >= 0 && m.agreement <= 1);
  assert.ok(m.baseline.agreement >= 0 && m.baseline.agreement <= 1);
  for (const part of [m.student, m.baseline]) {
    assert.is(part.epochsRun, 20);
    assert.ok(part.bestEpoch >= 1 && part.bestEpoch <= 20);
    assert.ok(part.trainSeconds > 0);
  }
  // The softmax-headed teacher, re-measured inside distill, scores what its own stage measured.
  const teacherMetrics = await readJson(teacher.dir, 'metrics.json');
  assert.is(m.teacher.outputIsProbabilities, true);
  assert.is(m.teacher.test.accuracy, teacherMetrics.test.accuracy);
  assert.is(m.teacher.stage, 'teacher');
  assert.is(m.teacher.version, 1);
  assert.equal(m.distillation.temperature, 4);
  assert.equal(m.distillation.alpha, 0.5);
  assert.equal(m.distillation.teacherLogits.computed, 'once');
  assert.equal(m.distillation.teacherLogits.samples, 90);
  assert.equal(m.dataset, { name: 'iris', train: 90, validation: 30, test: 30 });

  assert.equal(Object.keys(student.manifest.metrics).sort(), ['agreement', 'baseline_accuracy', 'parameters', 'teacher_accuracy', 'test_accuracy']);
  assert.is(student.manifest.metrics.test_accuracy, m.student.test.accuracy);
  for (const file of ['model.json', 'input-spec.json', 'history.json', 'baseline-history.json', 'metrics.json']) {
    assert.ok(file in student.manifest.files, `${file} not stored`);
  }
  const spec = await readJson(student.dir, 'input-spec.json');
  assert.is(spec.dataset, 'iris');
  assert.is(spec.outputIsProbabilities, false);

  const second = await runPipeline(await loadPipeline(FILE), { store: s, reporter: quiet });
  assert.equal(statuses(second), { teacher: 'reused@v1', student: 'reused@v1' });
});

test('a change to the distill stage reruns it alone, and the plan says why', async () => {
  const s = await store();
  await runPipeline(await loadPipeline(FILE, ['student.epochs=2', 'student.baseline=false']), { store: s, reporter: quiet });
  const changed = await loadPipeline(FILE, ['student.epochs=2', 'student.baseline=false', 'student.temperature=2']);
  const plan = await planPipeline(changed, { store: s });
  assert.is(plan[0].action, 'reuse');
  assert.is(plan[1].action, 'run');
  assert.match(plan[1].reason, 'config changed (temperature: 4 -> 2)');
});

test('alpha 1 turns distillation into the baseline: same initial weights, batches and loss give the same model', async () => {
  const s = await store();
  await runPipeline(await loadPipeline(FILE, ['student.alpha=1', 'student.epochs=5']), { store: s, reporter: quiet });
  const student = await s.openVersion('distill-iris', 'student');
  const m = await readJson(student.dir, 'metrics.json');
  assert.is(m.gain, 0);
  assert.is(m.student.test.loss, m.baseline.test.loss);
  const [history, baseline] = [await readJson(student.dir, 'history.json'), await readJson(student.dir, 'baseline-history.json')];
  const strip = (h: { seconds: number }[]) => h.map(({ seconds: _s, ...rest }) => rest);
  assert.equal(strip(history), strip(baseline));
});

test('a student that is the teacher has a zero soft loss: the stored logits line up with the shuffled batch rows', async () => {
  const s = await store();
  await runPipeline(await loadPipeline(FILE, ['student.epochs=1', 'student.baseline=false']), { store: s, reporter: quiet });
  const teacher = await s.openVersion('distill-iris', 'teacher');
  // The teacher's own model.json as the student (softmax head on both sides), a learning rate too
  // small to move it, alpha 0: any row mix-up between batch and teacher logits would show as KL > 0.
  const sets = [
    `student.model={path: ${join(teacher.dir, 'model.json')}}`,
    'student.alpha=0',
    'student.optimizer={sgd: {learningRate: 1e-12}}',
    'student.epochs=2',
    'student.baseline=false',
  ];
  await runPipeline(await loadPipeline(FILE, sets), { store: s, reporter: quiet });
  const student = await s.openVersion('distill-iris', 'student');
  const history = await readJson(student.dir, 'history.json');
  for (const epoch of history) assert.ok(epoch.loss < 1e-6, `epoch ${epoch.epoch} loss ${epoch.loss}`);
  const m = await readJson(student.dir, 'metrics.json');
  assert.is(m.agreement, 1);
  assert.is(m.student.test.accuracy, m.teacher.test.accuracy);
});

test('baseline: false trains the student only', async () => {
  const s = await store();
  await runPipeline(await loadPipeline(FILE, ['student.baseline=false', 'student.epochs=3']), { store: s, reporter: quiet });
  const student = await s.openVersion('distill-iris', 'student');
  const m = await readJson(student.dir, 'metrics.json');
  assert.is(m.baseline, undefined);
  assert.is(m.gain, undefined);
  assert.is(m.student.epochsRun, 3);
  assert.not.ok('baseline-history.json' in student.manifest.files);
  assert.not.ok('baseline_accuracy' in student.manifest.metrics);
});

test("a data set normalised unlike the teacher's is refused, naming the key and the fix", async () => {
  const s = await store();
  const other = 'data.iris2={format: csv, path: ../../data/iris.csv, header: false, skipRows: 1, label: 4, normalize: minmax, split: {validation: 0.2, test: 0.2}}';
  const pipeline = await loadPipeline(FILE, [other, 'student.data=iris2', 'teacher.epochs=1']);
  try {
    await runPipeline(pipeline, { store: s, reporter: quiet });
    assert.unreachable('a differently normalised data set was accepted');
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, 'stages.student.data');
    assert.match((err as Error).message, 'normalised differently');
    assert.match((err as Error).message, '("iris")');
  }
});

test('a mean-squared-error hard loss is refused, naming the key', async () => {
  const s = await store();
  try {
    await runPipeline(await loadPipeline(FILE, ['student.loss=meanSquaredError', 'teacher.epochs=1']), { store: s, reporter: quiet });
    assert.unreachable('meanSquaredError was accepted');
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, 'stages.student.loss');
  }
});

test('temperature <= 0 and alpha outside [0, 1] are refused when the file is read', async () => {
  for (const set of ['student.temperature=0', 'student.alpha=1.5', 'student.alpha=-0.1']) {
    try {
      await loadPipeline(FILE, [set]);
      assert.unreachable(`${set} was accepted`);
    } catch (err) {
      assert.instance(err, SpecError);
      assert.match((err as Error).message, set.split('=')[0].replace('student.', ''));
    }
  }
});

test('the data set defaults to the teacher\'s and the teacher is a declared input', async () => {
  const pipeline = await loadPipeline(FILE);
  const stage = pipeline.stages.get('student')!;
  assert.is(stage.config.data, 'iris');
  assert.equal(stage.deps, ['teacher']);
  assert.equal(stage.data, ['iris']);
  assert.equal(pipeline.graph.order, ['teacher', 'student']);
});

test('interrupted in the student\'s epoch 5: the rerun takes the finished baseline and the student from their checkpoints', async () => {
  const s = await store();
  await runPipeline(await loadPipeline(FILE), { store: s, reporter: quiet });
  const straight = await s.openVersion('distill-iris', 'student');
  const metrics = await readJson(straight.dir, 'metrics.json');
  await rm(straight.dir, { recursive: true });
  // 20 baseline epochs, then 5 of the student's.
  const stopping = new RecordingReporter({ stage: 'student', epochs: 25 });
  const error = await runPipeline(await loadPipeline(FILE), { store: s, reporter: stopping, stopRequested: () => stopping.stop }).catch((e) => e);
  assert.match((error as Error).message, 'interrupted during stage "student" after epoch 5/20 (student)');
  const resuming = new RecordingReporter();
  const record = await runPipeline(await loadPipeline(FILE), { store: s, reporter: resuming });
  assert.equal(record.stages[1].resumedFromEpoch, { baseline: 20, student: 5 });
  assert.equal(resuming.infos.filter((l) => l.includes('resuming')).map((l) => l.replace(/ \(.*/, '')), [
    'student: resuming from the checkpoint of epoch 20/20',
    'student: resuming from the checkpoint of epoch 5/20',
  ]);
  const again = await s.openVersion('distill-iris', 'student');
  assert.is(again.manifest.files['group1-shard1of1.bin'].sha256, straight.manifest.files['group1-shard1of1.bin'].sha256);
  const m = await readJson(again.dir, 'metrics.json');
  assert.equal([m.student.test, m.baseline.test, m.agreement], [metrics.student.test, metrics.baseline.test, metrics.agreement]);
});

test.run();
