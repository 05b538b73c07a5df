import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpecError, formatDiagnostic } from '../../src/spec/diagnostics.js';
import { parseSpecText, type SpecDocument } from '../../src/spec/document.js';
import { applyOverrides } from '../../src/spec/overrides.js';
import { loadSpec } from '../../src/spec/load.js';
import { validateAgainstSchema } from '../../src/spec/validate.js';
import { testSchema, validYaml, withLine } from './fixture.js';

interface Stage {
  epochs?: unknown;
  optimizer?: { adam?: { learningRate?: unknown } };
  model?: { layers?: { units?: unknown }[] };
  metrics?: unknown;
}
interface Pipeline {
  seed?: unknown;
  name?: unknown;
  stages: Record<string, Stage>;
}

const topLevelKeys = Object.keys(testSchema.properties);

function load(sets: string[], text = validYaml): SpecDocument {
  const doc = parseSpecText('p.yaml', text);
  applyOverrides(doc, sets, { topLevelKeys });
  return doc;
}

function setError(sets: string[], text = validYaml): SpecError {
  try {
    load(sets, text);
  } catch (err) {
    if (err instanceof SpecError) return err;
    throw err;
  }
  throw new Error('expected a SpecError');
}

test('stage shorthand and full path both set the stage key', () => {
  const a = load(['teacher.epochs=7']).data as Pipeline;
  const b = load(['stages.teacher.epochs=8']).data as Pipeline;
  assert.is(a.stages['teacher']!.epochs, 7);
  assert.is(b.stages['teacher']!.epochs, 8);
});

test('top-level keys, nested keys and list indices', () => {
  const doc = load(['seed=7', 'teacher.optimizer.adam.learningRate=0.01', 'teacher.model.layers.0.units=64']);
  const data = doc.data as Pipeline;
  assert.is(data.seed, 7);
  assert.is(data.stages['teacher']!.optimizer!.adam!.learningRate, 0.01);
  assert.is(data.stages['teacher']!.model!.layers![0]!.units, 64);
  assert.equal(doc.overrides, ['seed=7', 'teacher.optimizer.adam.learningRate=0.01', 'teacher.model.layers.0.units=64']);
  assert.equal(validateAgainstSchema(doc, testSchema), []);
});

test('a top-level key the file lacks is still top-level', () => {
  const doc = load(['seed=9'], validYaml.replace('seed: 42\n', ''));
  assert.is((doc.data as Pipeline).seed, 9);
});

test('values are YAML: numbers, booleans, lists, mappings, strings', () => {
  const doc = parseSpecText('p.yaml', 'name: x\n');
  applyOverrides(doc, ['a=3', 'b=true', 'c=[1, 2]', 'd={a: 1}', 'e=abc', 'f="3"', 'g=1e-3', 'h=', 'i=a=b']);
  assert.equal(doc.data, { name: 'x', a: 3, b: true, c: [1, 2], d: { a: 1 }, e: 'abc', f: '3', g: 0.001, h: null, i: 'a=b' });
});

test('overridden values are positioned at their --set', () => {
  const doc = load(['teacher.epochs=0', 'teacher.model.layers.1={type: dropout, rate: 0.5}']);
  assert.equal(doc.positionOf(['stages', 'teacher', 'epochs']), { file: '--set teacher.epochs=0', line: 0, col: 0 });
  assert.equal(doc.positionOf(['stages', 'teacher', 'model', 'layers', 1, 'rate']), {
    file: '--set teacher.model.layers.1={type: dropout, rate: 0.5}',
    line: 0,
    col: 0,
  });
  // Neighbours keep their place in the file.
  assert.equal(doc.positionOf(['stages', 'teacher', 'batchSize']), { file: 'p.yaml', line: 13, col: 16 });
});

test('a later --set of a parent takes over the position', () => {
  const doc = load(['teacher.epochs=2', 'stages.teacher.optimizer=sgd', 'teacher={uses: train, epochs: 4}']);
  assert.equal(doc.positionOf(['stages', 'teacher', 'epochs']).file, '--set teacher={uses: train, epochs: 4}');
});

test('a --set that breaks the schema is reported as coming from --set, in --set order', () => {
  const doc = load(['teacher.epochs=0', 'stages.report.metrics=[accuracy, los]']);
  const text = withLine(13, '    batchSize: 0');
  const withFileError = parseSpecText('p.yaml', text);
  applyOverrides(withFileError, ['teacher.epochs=0', 'stages.report.metrics=[accuracy, los]'], { topLevelKeys });
  const expected = [
    {
      file: '--set teacher.epochs=0',
      line: 0,
      col: 0,
      path: 'stages.teacher.epochs',
      message: 'expected an integer >= 1, found 0',
    },
    {
      file: '--set stages.report.metrics=[accuracy, los]',
      line: 0,
      col: 0,
      path: 'stages.report.metrics.1',
      message: 'expected one of accuracy, loss, confusion; found "los"; did you mean "loss"?',
    },
  ];
  assert.equal(validateAgainstSchema(doc, testSchema), expected);
  assert.equal(validateAgainstSchema(withFileError, testSchema), [
    { file: 'p.yaml', line: 13, col: 16, path: 'stages.teacher.batchSize', message: 'expected an integer >= 1, found 0' },
    ...expected,
  ]);
  assert.equal(
    formatDiagnostic(expected[0]!),
    '--set teacher.epochs=0: stages.teacher.epochs: expected an integer >= 1, found 0',
  );
});

test('a --set string where a number belongs says what was found', () => {
  const doc = load(['teacher.batchSize=big']);
  const [d] = validateAgainstSchema(doc, testSchema);
  assert.is(d!.file, '--set teacher.batchSize=big');
  assert.is(d!.message, 'expected an integer, found the string "big"');
});

test('unknown stage in the shorthand: did-you-mean', () => {
  const err = setError(['teachr.epochs=3']);
  assert.equal(err.diagnostics, [
    {
      file: '--set',
      line: 0,
      col: 0,
      path: '',
      message: '"teachr.epochs=3": unknown stage "teachr"; did you mean "teacher"? (stages: teacher, report)',
    },
  ]);
  assert.match(err.message, /1 problem in --set$/);
});

test('malformed --set expressions are all reported, each naming itself', () => {
  const err = setError(['noequals', '=3', 'a..b=1', 'teacher.epochs=[1', 'teacher.model.layers.9.units=1']);
  const messages = err.diagnostics.map((d) => d.message);
  assert.is(messages.length, 5);
  assert.ok(err.diagnostics.every((d) => d.file === '--set'));
  assert.match(messages[0]!, /^"noequals": expected key\.path=value/);
  assert.match(messages[1]!, /^"=3": the key before "=" is empty/);
  assert.match(messages[2]!, /^"a\.\.b=1": .*empty part/);
  assert.match(messages[3]!, /^"teacher\.epochs=\[1": the value "\[1" is not valid YAML/);
  assert.match(messages[4]!, /^"teacher\.model\.layers\.9\.units=1": .*layers has 3 items; index 9 is out of range/);
});

test('setting under a scalar is refused', () => {
  const err = setError(['teacher.epochs.x=1']);
  assert.match(err.diagnostics[0]!.message, /stages\.teacher\.epochs is the number 3, not a mapping or a list/);
});

test('missing intermediate mappings are created', () => {
  const doc = load(['stages.student.uses=train']);
  assert.equal((doc.data as Pipeline).stages['student'], { uses: 'train' });
  const diags = validateAgainstSchema(doc, testSchema);
  assert.ok(diags.length > 0);
  assert.ok(diags.every((d) => d.file === '--set stages.student.uses=train'));
  assert.ok(diags.some((d) => d.path === 'stages.student' && d.message === 'missing required key "model"'));
});

test('loadSpec: read, --set, validate, one SpecError with every problem', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spec-load-'));
  try {
    const file = join(dir, 'p.yaml');
    await writeFile(file, withLine(12, '    epochs: ten'));
    const ok = await loadSpec(file, { schema: testSchema, sets: ['teacher.epochs=2', 'seed=1'] });
    assert.is((ok.data as Pipeline).stages['teacher']!.epochs, 2);
    try {
      await loadSpec(file, { schema: testSchema, sets: ['report.metrics=[]'] });
      assert.unreachable('should have thrown');
    } catch (err) {
      assert.instance(err, SpecError);
      assert.is(
        (err as SpecError).message,
        `${file}:12:13: stages.teacher.epochs: expected an integer, found the string "ten"\n` +
          '--set report.metrics=[]: stages.report.metrics: expected a non-empty list, found an empty list\n' +
          `2 problems in ${file}`,
      );
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
