import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatDiagnostic } from '../../src/spec/diagnostics.js';
import { parseSpecText } from '../../src/spec/document.js';
import { validateAgainstSchema } from '../../src/spec/validate.js';
import { testSchema, validYaml, withLine } from './fixture.js';

function check(text: string, schema: object = testSchema, file = 'p.yaml'): string[] {
  return validateAgainstSchema(parseSpecText(file, text), schema).map(formatDiagnostic);
}

/** validYaml with its optimizer block (lines 14-16) replaced by `optimizer: <value>`. */
function withOptimizer(value: string): string {
  return validYaml.replace('    optimizer:\n      adam:\n        learningRate: 0.001\n', `    optimizer: ${value}\n`);
}

/** validYaml with its dropout layer (lines 23-24) replaced. */
function withSecondLayer(lines: string): string {
  return validYaml.replace('        - type: dropout\n          rate: 0.2\n', lines);
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

test('a valid file has no diagnostics', () => {
  assert.equal(check(validYaml), []);
});

test('unknown key: did you mean, positioned at the key', () => {
  assert.equal(check(withLine(12, '    epoch: 3')), [
    'p.yaml:12:5: stages.teacher.epoch: unknown key "epoch"; did you mean "epochs"?',
  ]);
  assert.equal(check(withLine(13, '    batch_size: 64')), [
    'p.yaml:13:5: stages.teacher.batch_size: unknown key "batch_size"; did you mean "batchSize"?',
  ]);
  assert.equal(check(withLine(8, 'stage:')), ['p.yaml:8:1: stage: unknown key "stage"; did you mean "stages"?']);
});

test('unknown key with no close match lists the allowed keys', () => {
  assert.equal(check(withLine(2, 'zzz: 42')), [
    'p.yaml:2:1: zzz: unknown key "zzz"; allowed keys here: name, seed, backend, data, stages',
  ]);
});

test('a key of another stage kind lists that kind\'s keys', () => {
  assert.equal(check(withLine(33, '    epochs: 3')), [
    'p.yaml:33:5: stages.report.epochs: unknown key "epochs"; allowed keys here: uses, needs, model, data, metrics',
  ]);
});

test('misspelled key that is also required: one diagnostic, not two', () => {
  assert.equal(check(withLine(26, '          unit: 10')), [
    'p.yaml:26:11: stages.teacher.model.layers.2.unit: unknown key "unit"; did you mean "units"?',
  ]);
});

test('misspelled stage kind: did you mean, and nothing else about that stage', () => {
  const text = withLine(10, '    uses: trian').replace('    epochs: 3', '    epoch: 3');
  assert.equal(check(text), [
    'p.yaml:10:11: stages.teacher.uses: expected one of train, evaluate; found "trian"; did you mean "train"?',
  ]);
});

test('a stage kind of the wrong type is reported once, on the kind', () => {
  assert.equal(check(withLine(10, '    uses: 3').replace('    epochs: 3', '    epoch: 3')), [
    'p.yaml:10:11: stages.teacher.uses: expected one of train, evaluate; found the number 3',
  ]);
});

test('enum: expected one of ..., found, did you mean', () => {
  assert.equal(check(withLine(3, 'backend: webgppu')), [
    'p.yaml:3:10: backend: expected one of cpu, wasm, webgl, webgpu, tensorflow; found "webgppu"; did you mean "webgpu"?',
  ]);
  assert.equal(check(withLine(6, '    format: csvv')), [
    'p.yaml:6:13: data.digits.format: expected one of csv, idx; found "csvv"; did you mean "csv"?',
  ]);
});

test('type: says what was found, with its value', () => {
  assert.equal(check(withLine(12, '    epochs: ten')), [
    'p.yaml:12:13: stages.teacher.epochs: expected an integer, found the string "ten"',
  ]);
  assert.equal(check(withLine(12, '    epochs: 2.5')), [
    'p.yaml:12:13: stages.teacher.epochs: expected an integer, found the number 2.5',
  ]);
  assert.equal(check(withLine(12, '    epochs:')), [
    'p.yaml:12:5: stages.teacher.epochs: expected an integer, found nothing (an empty value)',
  ]);
  assert.equal(check('- a\n- b\n'), ['p.yaml:1:1: expected a mapping, found a list of 2 items']);
});

test('required: at the parent mapping', () => {
  assert.equal(check(withLine(10, '    # uses: train')), ['p.yaml:9:3: stages.teacher: missing required key "uses"']);
  assert.equal(check(withLine(1, '# name: x')), ['p.yaml:2:1: missing required key "name"']);
  assert.equal(check(withLine(7, '    # path: data/mnist')), ['p.yaml:5:3: data.digits: missing required key "path"']);
});

test('limits: minimum, exclusiveMaximum, minItems, pattern, uniqueItems', () => {
  assert.equal(check(withLine(12, '    epochs: 0')), [
    'p.yaml:12:13: stages.teacher.epochs: expected an integer >= 1, found 0',
  ]);
  assert.equal(check(withLine(24, '          rate: 1')), [
    'p.yaml:24:17: stages.teacher.model.layers.1.rate: expected a number < 1, found 1',
  ]);
  assert.equal(check(withLine(33, '    metrics: []')), [
    'p.yaml:33:14: stages.report.metrics: expected a non-empty list, found an empty list',
  ]);
  assert.equal(check(withLine(1, 'name: Mnist Distill')), [
    'p.yaml:1:7: name: expected a string matching the pattern ^[a-z0-9-]+$, found "Mnist Distill"',
  ]);
  assert.equal(check(withLine(30, '    needs: [teacher, teacher]')), [
    'p.yaml:30:22: stages.report.needs.1: duplicate item "teacher": the same as item 0; items must be unique',
  ]);
});

test('a problem in a list item is positioned on that item', () => {
  assert.equal(check(withLine(26, '          units: -1')), [
    'p.yaml:26:18: stages.teacher.model.layers.2.units: expected an integer >= 1, found -1',
  ]);
  assert.equal(check(withLine(25, '        - type: dens')), [
    'p.yaml:25:17: stages.teacher.model.layers.2.type: expected one of dense, dropout, conv2d; found "dens"; did you mean "dense"?',
  ]);
  assert.equal(check(withLine(33, '    metrics: [accuracy, los]')), [
    'p.yaml:33:25: stages.report.metrics.1: expected one of accuracy, loss, confusion; found "los"; did you mean "loss"?',
  ]);
});

test('oneOf: the branch that fits the value speaks, not every branch', () => {
  assert.equal(check(withOptimizer('adamm')), [
    'p.yaml:14:16: stages.teacher.optimizer: expected one of adam, sgd, rmsprop; found "adamm"; did you mean "adam"?',
  ]);
  assert.equal(check(withLine(15, '      adamm:')), [
    'p.yaml:15:7: stages.teacher.optimizer.adamm: unknown key "adamm"; did you mean "adam"?',
  ]);
  assert.equal(check(withLine(16, '        learningRat: 0.1')), [
    'p.yaml:16:9: stages.teacher.optimizer.adam.learningRat: unknown key "learningRat"; did you mean "learningRate"?',
  ]);
  assert.equal(check(withLine(16, '        learningRate: 0')), [
    'p.yaml:16:23: stages.teacher.optimizer.adam.learningRate: expected a number > 0, found 0',
  ]);
  assert.equal(check(withOptimizer('{adam: {}, sgd: {}}')), [
    'p.yaml:14:16: stages.teacher.optimizer: expected exactly one key, found 2 (adam, sgd)',
  ]);
});

test('oneOf: a value of no allowed kind gets one merged message', () => {
  assert.equal(check(withOptimizer('3')), [
    'p.yaml:14:16: stages.teacher.optimizer: expected "adam", "sgd", "rmsprop" or a mapping, found the number 3',
  ]);
  assert.equal(check(withSecondLayer('        - type: conv2d\n          filters: 8\n          kernelSize: "3"\n')), [
    'p.yaml:25:23: stages.teacher.model.layers.1.kernelSize: expected an integer or a list, found the string "3"',
  ]);
  assert.equal(check(withSecondLayer('        - type: conv2d\n          filters: 8\n          kernelSize: [3, 3, 3]\n')), [
    'p.yaml:25:23: stages.teacher.model.layers.1.kernelSize: expected a list of at most 2 items, found a list of 3 items',
  ]);
});

test('oneOf dispatching on a const key picks the branch by that key', () => {
  const schema = clone(testSchema) as unknown as { $defs: Record<string, unknown> };
  schema.$defs['layer'] = {
    oneOf: [{ $ref: '#/$defs/layer-dense' }, { $ref: '#/$defs/layer-dropout' }, { $ref: '#/$defs/layer-conv2d' }],
  };
  assert.equal(check(withLine(25, '        - type: dens'), schema), [
    'p.yaml:25:17: stages.teacher.model.layers.2.type: expected one of dense, dropout, conv2d; found "dens"; did you mean "dense"?',
  ]);
  assert.equal(check(withLine(24, '          rate: -1'), schema), [
    'p.yaml:24:17: stages.teacher.model.layers.1.rate: expected a number >= 0, found -1',
  ]);
});

test('several problems: sorted by line, each once', () => {
  const text = withLine(33, '    metrics: [accuracy, los]')
    .replace('    epochs: 3', '    epochs: ten')
    .replace('backend: cpu', 'backend: metal');
  assert.equal(check(text), [
    'p.yaml:3:10: backend: expected one of cpu, wasm, webgl, webgpu, tensorflow; found "metal"',
    'p.yaml:12:13: stages.teacher.epochs: expected an integer, found the string "ten"',
    'p.yaml:33:25: stages.report.metrics.1: expected one of accuracy, loss, confusion; found "los"; did you mean "loss"?',
  ]);
});

test('JSON input: same messages, right positions', () => {
  const json = JSON.stringify(
    { name: 'x', stages: { t: { uses: 'train', data: 'd', epoch: 3, model: { layers: [{ type: 'dense', units: 'ten' }] } } } },
    null,
    2,
  );
  assert.equal(check(json, testSchema, 'p.json'), [
    'p.json:7:7: stages.t.epoch: unknown key "epoch"; did you mean "epochs"?',
    'p.json:12:22: stages.t.model.layers.0.units: expected an integer, found the string "ten"',
  ]);
});

test('an empty file says so', () => {
  assert.equal(check(''), ['p.yaml:1:1: the file is empty; expected a mapping']);
});

test('draft 2020-12 and $id schemas work the same', () => {
  const text = withLine(12, '    epoch: 3');
  const expected = ['p.yaml:12:5: stages.teacher.epoch: unknown key "epoch"; did you mean "epochs"?'];
  assert.equal(check(text, { ...testSchema, $schema: 'https://json-schema.org/draft/2020-12/schema' }), expected);
  assert.equal(check(text, { ...testSchema, $id: 'https://example.com/pipeline.schema.json' }), expected);
});

test.run();
