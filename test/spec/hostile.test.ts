import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/store.js';
import { InputError } from '../../src/errors.js';
import { SpecError } from '../../src/spec/diagnostics.js';
import { MAX_SPEC_BYTES } from '../../src/spec/document.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { ROOT, cli, removeTempDirs, tempDir } from '../helpers.js';

// Pipeline files written to do harm: escape the store, exhaust memory or time, or smuggle bytes
// past the parser. Each must be one clear error naming the file and the place, and nothing else.

const IRIS = join(ROOT, 'data', 'iris.csv');

/** A small valid pipeline with `{{KEY}}` holes. */
function pipelineText(fill: Record<string, string> = {}): string {
  const values: Record<string, string> = {
    NAME: 'iris', STAGE: 'net', EPOCHS: '3', BATCH: '16', LR: '0.01', UNITS: '8', DATA: IRIS, ...fill,
  };
  return `name: {{NAME}}
data:
  iris: {format: csv, path: "{{DATA}}", header: false, skipRows: 1, label: 4}
stages:
  {{STAGE}}:
    uses: train
    data: iris
    model:
      layers:
        - {type: dense, units: {{UNITS}}, activation: relu}
        - {type: dense, units: 3}
    epochs: {{EPOCHS}}
    batchSize: {{BATCH}}
    optimizer: {adam: {learningRate: {{LR}}}}
`.replace(/\{\{(\w+)\}\}/g, (_, key: string) => values[key]!);
}

let dir: string;
test.before(async () => {
  dir = await tempDir();
});
test.after(removeTempDirs);

async function write(name: string, text: string | Buffer): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text);
  return file;
}

/** Loads `file` (or the text written to it), which must fail with a SpecError at `position` saying `message`. */
async function refused(file: string, sets: string[], position: string, message: string | RegExp): Promise<SpecError> {
  try {
    await loadPipeline(file, sets);
  } catch (err) {
    assert.instance(err, SpecError, `expected a SpecError, got ${String(err)}`);
    const text = (err as SpecError).message;
    assert.ok(text.includes(`${position}`), `expected "${position}" in:\n${text}`);
    if (typeof message === 'string') assert.ok(text.includes(message), `expected "${message}" in:\n${text}`);
    else assert.match(text, message);
    return err as SpecError;
  }
  assert.unreachable(`${file} was accepted`);
  throw new Error('unreachable');
}

test('pipeline and stage names that would leave the store: "..", "/", absolute, NUL', async () => {
  const names: [string, string][] = [
    ['NAME', '../escape'], ['NAME', 'a/b'], ['NAME', '/tmp/abs'], ['NAME', '"a\\0b"'],
    ['STAGE', '"../x"'], ['STAGE', '"a/b"'], ['STAGE', '"/etc"'], ['STAGE', '"a\\0b"'],
  ];
  for (const [key, value] of names) {
    const file = await write('names.yaml', pipelineText({ [key]: value }));
    const line = key === 'NAME' ? 1 : 5;
    await refused(file, [], `${file}:${line}:`, /a name of letters, digits|may not contain a NUL/);
  }
  // A --set cannot do what the file may not.
  await refused(await write('ok.yaml', pipelineText()), ['name=../../x'], '--set name=../../x', 'a name of letters');
});

test('the store refuses such names itself, and nothing is created outside its root', async () => {
  const root = join(dir, 'store');
  const store = new LocalArtifactStore(root);
  const rejects = async (what: string, fn: () => Promise<unknown>) => {
    const err = await fn().then(() => undefined, (e: unknown) => e);
    assert.instance(err, InputError, `${what} was not refused`);
  };
  await rejects('lock(serving)', () => store.lock('serving'));
  for (const bad of ['..', '../x', 'a/b', '/abs', 'a\0b', '.hidden']) {
    await rejects(`lock(${bad})`, () => store.lock(bad));
    await rejects(`publish(ok, ${bad})`, () => store.publish('ok', bad, async () => assert.unreachable() as never));
    await rejects(`writeRun(${bad})`, () => store.writeRun({ pipeline: bad, id: 'r' } as never));
  }
  assert.equal((await readdir(dir)).filter((n) => !n.endsWith('.yaml')), [], 'something was written');
});

test('export modelName with "..": refused when the file is read, not after the stage ran', async () => {
  const text = `${pipelineText()}  release: {uses: export, from: net, modelName: "a..b"}\n`;
  const file = await write('export.yaml', text);
  await refused(file, [], `${file}:15:`, 'without ".."');
});

test('YAML alias bombs ("billion laughs") are refused in milliseconds', async () => {
  let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]\n`;
  const started = Date.now();
  await refused(await write('bomb.yaml', `${text}${pipelineText()}`), [], 'bomb.yaml:', 'alias bomb');
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
});

test('deep nesting: flow brackets, block indentation and aliases stacked on aliases', async () => {
  const flow = `name: x\nstages: ${'['.repeat(200_000)}${']'.repeat(200_000)}\n`;
  const started = Date.now();
  await refused(await write('flow.yaml', flow), [], 'flow.yaml:2:', 'nest more than 64 levels');
  assert.ok(Date.now() - started < 1000, `flow nesting took ${Date.now() - started} ms`);
  const block = `name: x\nstages:\n${Array.from({ length: 300 }, (_, i) => `${' '.repeat(i + 1)}a:`).join('\n')} 1\n`;
  await refused(await write('block.yaml', block), [], 'block.yaml:', 'nest more than 64 levels');
  // Each alias adds the anchored depth where it stands, so the data is deeper than the text.
  const aliased = `a: &a ${'['.repeat(40)}${']'.repeat(40)}\nb: &b ${'['.repeat(30)}*a${']'.repeat(30)}\n${pipelineText()}`;
  await refused(await write('aliased.yaml', aliased), [], 'aliased.yaml:', 'nest more than 64 levels');
  await refused(await write('ok.yaml', pipelineText()), [`net.epochs=${'['.repeat(100)}${']'.repeat(100)}`], '--set', 'nest more than 64 levels');
});

test('an enormous file is refused by size before it is parsed; so is /dev/zero', async () => {
  const big = `${pipelineText()}description: "${'x'.repeat(MAX_SPEC_BYTES)}"\n`;
  await refused(await write('big.yaml', big), [], 'big.yaml:1:1', /over the 1,048,576-byte limit/);
  try {
    await loadPipeline('/dev/zero');
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, 'pipeline file /dev/zero is a device, not a regular file');
  }
});

test('duplicate keys are refused at the second one, naming the first; keys must be names', async () => {
  const file = await write('dup.yaml', pipelineText().replace('    epochs: 3\n', '    epochs: 3\n    epochs: 4\n'));
  await refused(file, [], `${file}:13:5`, 'duplicate key "epochs" (first set on line 12)');
  // `? [a, b]` would become the key "a,b"; an alias key would become "[object Object]".
  for (const key of ['? [a, b]\n:', '*anchor :', '!!binary aGVsbG8=:']) {
    const text = `${pipelineText().replace('name: iris', 'name: &anchor {a: 1}')}${key} 1\n`;
    await refused(await write('keys.yaml', text), [], 'keys.yaml:15:', 'a key must be a plain name');
  }
});

test('huge and non-finite numbers: epochs, batchSize, learningRate, units, filters, kernels, shards', async () => {
  const cases: [Record<string, string>, string, string | RegExp][] = [
    [{ EPOCHS: '1e308' }, '12:13', 'stages.net.epochs: expected an integer <= 100000'],
    [{ BATCH: '1e12' }, '13:16', 'stages.net.batchSize: expected an integer <= 1048576'],
    [{ LR: '.inf' }, '14:38', 'learningRate: expected a finite number, found Infinity'],
    [{ LR: '.nan' }, '14:38', 'learningRate: expected a finite number, found NaN'],
    [{ LR: '-.inf' }, '14:38', 'expected a finite number, found -Infinity'],
    [{ UNITS: '1e9' }, '10:32', 'layers.0.units: expected an integer <= 65536'],
  ];
  for (const [fill, position, message] of cases) {
    const file = await write('numbers.yaml', pipelineText(fill));
    const err = await refused(file, [], `${file}:${position}`, message);
    assert.is(err.diagnostics.length, 1, err.message);
  }
  const conv = pipelineText().replace('{type: dense, units: 8, activation: relu}', '{type: conv2d, filters: 1e9, kernelSize: [1000000, 3]}');
  const file = await write('conv.yaml', conv);
  const err = await refused(file, [], `${file}:10:`, 'filters: expected an integer <= 65536');
  assert.match(err.message, 'kernelSize.0: expected an integer <= 1024');
  await refused(await write('ok.yaml', pipelineText()), ['net.epochs=.inf'], '--set net.epochs=.inf', 'expected a finite number');
  const shards = `${pipelineText()}  release: {uses: export, from: net, shardBytes: 1}\n`;
  await refused(await write('shards.yaml', shards), [], 'shards.yaml:15:', 'shardBytes: expected an integer >= 65536');
});

test('encodings: UTF-16 with a BOM reads; binary, NUL, control characters and invalid UTF-8 are refused at their line', async () => {
  const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(pipelineText(), 'utf16le')]);
  assert.is((await loadPipeline(await write('utf16.yaml', utf16))).name, 'iris');
  const utf8bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(pipelineText())]);
  assert.is((await loadPipeline(await write('bom.yaml', utf8bom))).name, 'iris');
  const latin1 = Buffer.from(pipelineText().replace('name: iris', 'name: iris\ndescription: caf\xe9'), 'latin1');
  await refused(await write('latin1.yaml', latin1), [], 'latin1.yaml:2:17', 'byte 0xe9 is not valid UTF-8');
  const binary = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256));
  await refused(await write('binary.bin', binary), [], 'binary.bin:', /NUL byte: this is a binary file/);
  await refused(await write('bell.yaml', pipelineText().replace('name: iris', 'name: ir\x07is')), [], 'bell.yaml:1:9', 'control character U+0007');
  const utf32 = Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), Buffer.from('n\0\0\0')]);
  await refused(await write('utf32.yaml', utf32), [], 'utf32.yaml:1:1', 'UTF-32');
});

test('a data path may point anywhere (it is only read), but not hold a NUL', async () => {
  const outside = await loadPipeline(await write('abs-data.yaml', pipelineText()));
  assert.is(outside.data['iris']!.path, IRIS);
  await refused(await write('nul-data.yaml', pipelineText({ DATA: '/tmp/a\\0b.csv' })), [], 'nul-data.yaml:3:', 'data.iris.path: a string may not contain a NUL');
});

test('from the CLI: exit 2 and the file:line:col message, no stack trace', async () => {
  const file = await write('cli.yaml', pipelineText({ LR: '.nan' }));
  const result = await cli(['validate', file]);
  assert.is(result.code, 2);
  assert.match(result.stderr, `${file}:14:38: stages.net.optimizer.adam.learningRate: expected a finite number, found NaN`);
  assert.not.match(result.stderr, '    at ');
});

test.run();
