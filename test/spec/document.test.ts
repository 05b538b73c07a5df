import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../../src/errors.js';
import { SpecError, formatDiagnostic, type Diagnostic } from '../../src/spec/diagnostics.js';
import { parseSpecText, readSpecFile } from '../../src/spec/document.js';
import { validYaml, withLine } from './fixture.js';

function parseError(text: string): SpecError {
  try {
    parseSpecText('pipelines/x.yaml', text);
  } catch (err) {
    if (err instanceof SpecError) return err;
    throw err;
  }
  throw new Error('expected a SpecError');
}

test('parses YAML into plain data with key positions', () => {
  const doc = parseSpecText('p.yaml', validYaml);
  assert.equal((doc.data as { seed: number }).seed, 42);
  assert.equal(doc.positionOf(['stages', 'teacher', 'epochs']), { file: 'p.yaml', line: 12, col: 13 });
  assert.equal(doc.positionOf(['stages', 'teacher', 'epochs'], 'key'), { file: 'p.yaml', line: 12, col: 5 });
  // List items: the item itself.
  assert.equal(doc.positionOf(['stages', 'teacher', 'model', 'layers', 2]), { file: 'p.yaml', line: 25, col: 11 });
  assert.equal(doc.positionOf(['stages', 'teacher', 'model', 'layers', 2, 'units']), { file: 'p.yaml', line: 26, col: 18 });
  assert.equal(doc.positionOf(['stages', 'report', 'metrics', 1]), { file: 'p.yaml', line: 33, col: 25 });
  assert.equal(doc.overrides, []);
});

test('a path with no place falls back to its nearest parent key', () => {
  const doc = parseSpecText('p.yaml', validYaml);
  assert.equal(doc.positionOf(['stages', 'teacher', 'nosuch', 'deeper']), { file: 'p.yaml', line: 9, col: 3 });
  assert.equal(doc.positionOf([]), { file: 'p.yaml', line: 1, col: 1 });
});

test('JSON is accepted and positioned', () => {
  const json = '{\n  "name": "x",\n  "stages": {\n    "t": {"uses": "train", "epochs": 3}\n  }\n}\n';
  const doc = parseSpecText('p.json', json);
  assert.equal(doc.data, { name: 'x', stages: { t: { uses: 'train', epochs: 3 } } });
  assert.equal(doc.positionOf(['stages', 't', 'epochs']), { file: 'p.json', line: 4, col: 38 });
  assert.equal(doc.positionOf(['stages', 't', 'epochs'], 'key'), { file: 'p.json', line: 4, col: 28 });
});

test('YAML 1.2: yes/no/on/off stay strings', () => {
  const doc = parseSpecText('p.yaml', 'a: yes\nb: off\nc: true\n');
  assert.equal(doc.data, { a: 'yes', b: 'off', c: true });
});

test('YAML syntax error reports line:col', () => {
  const err = parseError(withLine(18, '      inputShape: [784'));
  assert.is(err.diagnostics.length, 1);
  const d = err.diagnostics[0]!;
  assert.is(d.file, 'pipelines/x.yaml');
  assert.is(d.line, 19);
  assert.is(d.col, 7);
  assert.match(d.message, /^YAML syntax error: /);
  assert.ok(err instanceof InputError);
  assert.is(err.exitCode, 2);
  assert.match(err.message, /^pipelines\/x\.yaml:19:7: YAML syntax error: .*\n1 problem in pipelines\/x\.yaml$/);
});

test('bad indentation is a syntax error at its line', () => {
  const err = parseError('name: x\nstages:\n  a:\n    uses: train\n   epochs: 3\n');
  assert.is(err.diagnostics[0]!.line, 5);
});

test('duplicate keys are errors naming the key and its first line', () => {
  const err = parseError(withLine(13, '    epochs: 4'));
  assert.equal(err.diagnostics, [
    {
      file: 'pipelines/x.yaml',
      line: 13,
      col: 5,
      path: '',
      message: 'duplicate key "epochs" (first set on line 12): a key may appear only once in a mapping',
    },
  ]);
});

test('two documents in one file are refused', () => {
  const err = parseError('name: a\n---\nname: b\n');
  assert.match(err.diagnostics[0]!.message, /more than one YAML document/);
});

test('alias bombs are refused quickly', () => {
  const levels = 'abcdefghi'.split('');
  let text = `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n`;
  for (let i = 1; i < levels.length; i++) {
    const prev = levels[i - 1]!;
    text += `${levels[i]}: &${levels[i]} [${Array(9).fill(`*${prev}`).join(',')}]\n`;
  }
  const t0 = Date.now();
  const err = parseError(text);
  assert.ok(Date.now() - t0 < 1000, 'took too long');
  assert.is(err.diagnostics.length, 1);
  assert.match(err.diagnostics[0]!.message, /alias bomb/);
});

test('ordinary anchors, aliases and merge keys still work', () => {
  const doc = parseSpecText('p.yaml', 'base: &b\n  uses: train\n  epochs: 2\nstages:\n  a:\n    <<: *b\n    epochs: 5\n  b: *b\n');
  assert.equal(doc.data, {
    base: { uses: 'train', epochs: 2 },
    stages: { a: { uses: 'train', epochs: 5 }, b: { uses: 'train', epochs: 2 } },
  });
  // Merged keys point where they are written: in the anchored mapping.
  assert.equal(doc.positionOf(['stages', 'a', 'uses']), { file: 'p.yaml', line: 2, col: 9 });
  assert.equal(doc.positionOf(['stages', 'a', 'epochs']), { file: 'p.yaml', line: 7, col: 13 });
  // Data reached through an alias points at the line that uses the alias.
  assert.equal(doc.positionOf(['stages', 'b', 'epochs']), { file: 'p.yaml', line: 8, col: 3 });
});

test('git merge-conflict markers get a hint at the marker line', () => {
  const text = validYaml.replace('    epochs: 3\n', '<<<<<<< HEAD\n    epochs: 3\n=======\n    epochs: 5\n>>>>>>> feature\n');
  const err = parseError(text);
  assert.is(err.diagnostics.length, 1);
  const d = err.diagnostics[0]!;
  assert.is(d.line, 12);
  assert.is(d.col, 1);
  assert.match(d.message, /merge conflict/);
  assert.match(d.message, /<<<<<<< HEAD/);
});

test('formatDiagnostic and the SpecError message', () => {
  const ds: Diagnostic[] = [
    { file: 'a.yaml', line: 3, col: 5, path: 'stages.t.epochs', message: 'expected an integer, found the string "ten"' },
    { file: '--set t.epochs=0', line: 0, col: 0, path: 'stages.t.epochs', message: 'expected an integer >= 1, found 0' },
  ];
  assert.is(formatDiagnostic(ds[0]!), 'a.yaml:3:5: stages.t.epochs: expected an integer, found the string "ten"');
  assert.is(formatDiagnostic(ds[1]!), '--set t.epochs=0: stages.t.epochs: expected an integer >= 1, found 0');
  const err = new SpecError(ds, 'a.yaml');
  assert.is(err.message.split('\n').length, 3);
  assert.ok(err.message.endsWith('\n2 problems in a.yaml'));
  assert.is(err.code, 'E_SPEC');
});

test('readSpecFile reads a file and names a missing one', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spec-doc-'));
  try {
    const file = join(dir, 'p.yaml');
    await writeFile(file, validYaml);
    const doc = await readSpecFile(file);
    assert.is(doc.file, file);
    assert.is(doc.positionOf(['seed']).line, 2);
    const missing = join(dir, 'nope.yaml');
    try {
      await readSpecFile(missing);
      assert.unreachable('should have thrown');
    } catch (err) {
      assert.instance(err, InputError);
      assert.ok(!(err instanceof SpecError));
      assert.match((err as Error).message, missing);
      assert.match((err as Error).message, /not found/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
