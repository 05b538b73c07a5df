import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { SpecError } from '../../src/spec/diagnostics.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { cli, fixture } from '../helpers.js';

// Each file in test/fixtures/invalid/ is a malformed pipeline whose first line says what the error
// must contain: `# expect: LINE:COL message` (COL or message may be omitted).
const INVALID = fixture('invalid');

async function expectation(file: string): Promise<{ position: string; message: string }> {
  const first = (await readFile(file, 'utf8')).split('\n')[0];
  const match = /^# expect: (?:(\d+:(?:\d+)?) ?)?(.*)$/.exec(first);
  if (!match) throw new Error(`${file}: first line must be "# expect: LINE:COL message"`);
  return { position: match[1] ?? '', message: match[2] };
}

const files = (await readdir(INVALID)).filter((f) => f.endsWith('.yaml')).sort();

test('there are at least 10 distinct malformed pipeline files', () => {
  assert.ok(files.length >= 10, `only ${files.length}`);
});

for (const name of files) {
  test(`invalid/${name}: refused with its position and message`, async () => {
    const file = join(INVALID, name);
    const { position, message } = await expectation(file);
    try {
      await loadPipeline(file);
      assert.unreachable(`${name} was accepted`);
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      const text = err.message;
      assert.ok(text.includes(`${file}:${position}`), `expected position ${position} in:\n${text}`);
      assert.ok(text.includes(message), `expected "${message}" in:\n${text}`);
    }
  });
}

test('a valid pipeline loads with its stages in graph order, not file order', async () => {
  const pipeline = await loadPipeline(fixture('iris.yaml'));
  assert.equal(pipeline.graph.order, ['net', 'check']);
  assert.is(pipeline.stages.get('check')!.config.data, 'iris', 'evaluate defaults to the data its model trained on');
});

test('--set overrides are applied, typed and recorded', async () => {
  const pipeline = await loadPipeline(fixture('iris.yaml'), ['net.epochs=5', 'seed=3']);
  assert.is(pipeline.stages.get('net')!.config.epochs, 5);
  assert.is(pipeline.seed, 3);
  assert.equal(pipeline.overrides, ['net.epochs=5', 'seed=3']);
});

test('pipeline validate exits 2 and prints file:line:col; 0 on a good file', async () => {
  const bad = await cli(['validate', join(INVALID, 'misspelled-key.yaml')]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, 'misspelled-key.yaml:10:5: stages.net.epoch: unknown key "epoch"; did you mean "epochs"?');
  const good = await cli(['validate', fixture('iris.yaml')]);
  assert.is(good.code, 0, good.stderr);
  assert.match(good.stdout, 'net -> check');
});

test.run();
