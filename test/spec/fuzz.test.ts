import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertSafeName } from '../../src/artifacts/store.js';
import { loadDataset } from '../../src/data/load.js';
import type { CsvDataSpec } from '../../src/data/types.js';
import { PipelineError } from '../../src/errors.js';
import { loadPipeline } from '../../src/spec/pipeline.js';
import { ROOT, removeTempDirs, tempDir } from '../helpers.js';

// Mutated pipeline files through loadPipeline and mutated CSVs through the CSV loader: whatever
// the bytes, only a PipelineError may come out (never a TypeError, a RangeError or an unhandled
// rejection), and its message names the file. The seed is fixed so CI is reproducible; a failure
// prints it with fast-check's replay path. FUZZ_SEED and FUZZ_RUNS override both.

const SEED = Number(process.env.FUZZ_SEED ?? 20261124);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1);
const PIPELINE_RUNS = Math.round(1500 * RUNS);
const CSV_RUNS = Math.round(1000 * RUNS);

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => unhandled.push(reason));

/** Values that break parsers, schemas and allocators. */
const EXTREMES = [
  '1e308', '-1e308', '.inf', '-.inf', '.nan', '1e12', '1e9', '0', '-1', '0.5', '9007199254740993', '4294967296',
  '""', "''", '~', 'null', 'true', '[]', '{}', '[[]]', '"../../../tmp/escape"', '/etc/passwd', '"a\\0b"', '"\\u0000"',
  '"\\x07"', '!!binary aGVsbG8=', '!!set {a, b}', '!!omap [a: 1]', '!!float "1e999"', '!!int "0x7fffffffffffffff"',
  '*nowhere', '&self [*self]', '<LONG>', '"<LONG>"', '[[[[[[[[[[[[[[[[[[[[', '{a: [1, {b: [2, {c: 3}]}]}',
  '!!js/function "f(){}"', '<<: *x', '@', '`', '%YAML 1.1', '---', '...', '? complex', '|', '>-', '__proto__',
  'constructor', '{__proto__: {polluted: 1}}', '\ttab', 'é', '\u2028', '\uFEFF', '"\uD800"',
];
const CHARS = [
  ':', '[', ']', '{', '}', '&', '*', '!', '|', '>', '-', "'", '"', '#', ',', '\n', ' ', '\t', '\0', '\x07', '\\', '%',
  '@', '?', '<', '=', 'é', '\uFEFF', '\u2028', 'a', '1', '.', '/', '~', 'e',
];
const ANCHOR_BOMB = 'a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n';

type Edit =
  | { kind: 'insert' | 'replace'; at: number; text: string }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'swap'; a: number; b: number }
  | { kind: 'duplicate' | 'drop'; a: number }
  | { kind: 'value'; a: number; value: string }
  | { kind: 'alias'; a: number; b: number }
  | { kind: 'number'; a: number; value: string }
  | { kind: 'cell'; a: number; b: number; value: string }
  | { kind: 'prepend'; text: string };

const where = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

/** Stands for 3,000 characters in a generated value, so a counterexample prints short. */
const expand = (text: string) => text.replaceAll('<LONG>', '9'.repeat(3000));

/** Numbers that pass a schema's "type: number" but no sane limit. */
const EXTREME_NUMBERS = ['1e308', '-1e308', '.inf', '-.inf', '.nan', '1e12', '1e9', '65537', '0', '-1', '1e-320', '0.999999999', '4294967296'];

function editArbitrary(extremes: string[], chars: string[]): fc.Arbitrary<Edit> {
  return fc.oneof(
    // Targeted edits keep the rest of the file valid, so their values reach the checks past parsing.
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('number' as const), a: where, value: fc.constantFrom(...EXTREME_NUMBERS) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('cell' as const), a: where, b: where, value: fc.constantFrom(...extremes) }) },
    fc.record({ kind: fc.constantFrom('insert' as const, 'replace' as const), at: where, text: fc.constantFrom(...chars) }),
    fc.record({ kind: fc.constant('delete' as const), at: where, length: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('swap' as const), a: where, b: where }),
    fc.record({ kind: fc.constantFrom('duplicate' as const, 'drop' as const), a: where }),
    fc.record({ kind: fc.constant('value' as const), a: where, value: fc.constantFrom(...extremes) }),
    fc.record({ kind: fc.constant('alias' as const), a: where, b: where }),
    fc.record({ kind: fc.constant('prepend' as const), text: fc.constantFrom(ANCHOR_BOMB, '\uFEFF', '%YAML 1.2\n---\n', '<<<<<<< HEAD\n') }),
  );
}

/** `key: value` lines: where a value can be swapped for another. */
const VALUE_LINE = /^(\s*(?:- )?[^\s#:][^:#]*:\s+)(\S.*)$/;

function applyEdit(text: string, edit: Edit): string {
  const lines = text.split('\n');
  const line = (f: number) => Math.floor(f * lines.length);
  switch (edit.kind) {
    case 'insert':
    case 'replace': {
      const at = Math.floor(edit.at * (text.length + 1));
      return text.slice(0, at) + edit.text + text.slice(edit.kind === 'replace' ? at + 1 : at);
    }
    case 'delete': {
      const at = Math.floor(edit.at * text.length);
      return text.slice(0, at) + text.slice(at + edit.length);
    }
    case 'swap': {
      const [a, b] = [line(edit.a), line(edit.b)];
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join('\n');
    }
    case 'duplicate':
      lines.splice(line(edit.a), 0, lines[line(edit.a)]!);
      return lines.join('\n');
    case 'drop':
      lines.splice(line(edit.a), 1);
      return lines.join('\n');
    case 'value':
    case 'alias': {
      const candidates = lines.map((l, i) => (VALUE_LINE.test(l) ? i : -1)).filter((i) => i >= 0);
      if (!candidates.length) return text;
      const pick = (f: number) => candidates[Math.floor(f * candidates.length)]!;
      const a = pick(edit.a);
      if (edit.kind === 'value') {
        lines[a] = lines[a]!.replace(VALUE_LINE, (_, key: string) => `${key}${expand(edit.value)}`);
      } else {
        // Anchor one value and put an alias to it in place of another (maybe before it, maybe itself).
        lines[a] = lines[a]!.replace(VALUE_LINE, (_, key: string, value: string) => `${key}&fz ${value}`);
        const b = pick(edit.b);
        lines[b] = lines[b]!.replace(VALUE_LINE, (_, key: string) => `${key}*fz`);
      }
      return lines.join('\n');
    }
    case 'number': {
      // A number standing as a YAML value, in block or flow style.
      const numbers = [...text.matchAll(/(?<=[:,[{]\s*)-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?=\s*(?:[,\]}#]|$))/gm)];
      if (!numbers.length) return text;
      const m = numbers[Math.floor(edit.a * numbers.length)]!;
      return text.slice(0, m.index) + edit.value + text.slice(m.index! + m[0].length);
    }
    case 'cell': {
      const a = line(edit.a);
      const cells = lines[a]!.split(',');
      cells[Math.floor(edit.b * cells.length)] = expand(edit.value);
      lines[a] = cells.join(',');
      return lines.join('\n');
    }
    case 'prepend':
      return edit.text + text;
  }
}

/** Fails with what went wrong and the seed, so the run can be replayed. */
async function check(property: fc.IAsyncProperty<any>, numRuns: number, what: string): Promise<void> {
  const started = Date.now();
  try {
    await fc.assert(property, { seed: SEED, numRuns });
  } catch (err) {
    console.error(`\n${what}: fuzzing failed with seed ${SEED}; replay with FUZZ_SEED=${SEED} (fast-check's path is below)\n`);
    throw err;
  }
  console.log(`${what}: ${numRuns} cases in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${SEED})`);
}

function expectPipelineError(err: unknown, names: string[]): void {
  if (!(err instanceof PipelineError)) {
    const e = err as Error;
    throw new Error(`expected a PipelineError, got ${e?.name}: ${e?.message}\n${e?.stack}`);
  }
  if (!names.some((n) => err.message.includes(n))) throw new Error(`the message names none of ${names.join(', ')}:\n${err.message}`);
  // A message quoting a whole cell of megabytes helps nobody; each line (one diagnostic) stays short.
  const long = err.message.split('\n').find((l) => l.length > 1000);
  if (long) throw new Error(`a message line of ${long.length} characters: ${long.slice(0, 300)}…`);
}

/** What a file that loads may still not carry into a run: non-finite numbers, NUL characters. */
function badValue(value: unknown, path = ''): string | undefined {
  if (typeof value === 'number' && !Number.isFinite(value)) return `${path} = ${value}`;
  if (typeof value === 'string' && value.includes('\0')) return `${path} holds a NUL`;
  if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      const found = badValue(v, `${path}.${k}`);
      if (found) return found;
    }
  }
  return undefined;
}

let dir: string;
test.before(async () => {
  // Thousands of small writes: tmpfs where there is one (a disk-backed /tmp costs seconds here).
  dir = existsSync('/dev/shm') ? await mkdtemp(join('/dev/shm', 'tfjs-pipeline-fuzz-')) : await tempDir();
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
  await removeTempDirs();
});

test('mutated pipeline files: only PipelineErrors, each naming the file (or the --set)', async () => {
  const sources = [join(ROOT, 'pipelines', 'quickstart.yaml')];
  for (const name of (await readdir(join(ROOT, 'test', 'fixtures'))).filter((n) => n.endsWith('.yaml'))) {
    sources.push(join(ROOT, 'test', 'fixtures', name));
  }
  const texts = await Promise.all(sources.map((s) => readFile(s, 'utf8')));
  const file = join(dir, 'fuzzed.yaml');
  const sets = fc.array(
    fc.tuple(fc.constantFrom('seed', 'name', 'digits-mlp.epochs', 'net.batchSize', 'stages.x.model', 'data.digits.path', 'a..b', '=x'), fc.constantFrom(...EXTREMES)),
    { maxLength: 2 },
  );
  let loaded = 0;
  await check(
    fc.asyncProperty(fc.nat(texts.length - 1), fc.array(editArbitrary(EXTREMES, CHARS), { minLength: 1, maxLength: 4 }), sets, async (source, edits, setPairs) => {
      writeFileSync(file, edits.reduce(applyEdit, texts[source]!));
      try {
        const pipeline = await loadPipeline(file, setPairs.map(([k, v]) => `${k}=${v}`));
        loaded++;
        for (const name of [pipeline.name, ...pipeline.stages.keys(), ...Object.keys(pipeline.data)]) assertSafeName('name', name);
        const bad = badValue({ data: pipeline.data, stages: Object.fromEntries([...pipeline.stages].map(([n, st]) => [n, st.config])) });
        if (bad) throw new Error(`loaded with ${bad}`);
      } catch (err) {
        expectPipelineError(err, [file, '--set']);
      }
    }),
    PIPELINE_RUNS,
    'pipeline files',
  );
  // Some mutations leave a valid file; a fuzzer whose every case fails the first check tests little.
  assert.ok(loaded > 0, 'no mutated file loaded');
  assert.equal(unhandled, []);
});

test('mutated CSVs: only PipelineErrors, each naming the file', async () => {
  const iris = (await readFile(join(ROOT, 'data', 'iris.csv'), 'utf8')).split('\n').slice(0, 40).join('\n');
  const named = `sepal_length,sepal_width,petal_length,petal_width,species\n${iris.split('\n').slice(1).join('\n')}`;
  const texts = [iris, named];
  const cells = ['1e39', '-1e39', '3e38', '-3.4e38', 'NaN', 'nan', '', '?', '-', '1e-50', '<LONG>', '"', '""', '"a,b"', 'ÿ', '\0', ' ', 'Infinity', '0x10', '1_000', '١٢', ',,,,', '\r', '\r\n'];
  const bytes = ['\0', '\xff', '\xfe', '\xc3', '\x80', '\uFEFF', '"', ',', ';', '\n', '\r', ' ', '\t', 'a', '1', '.', 'e', '-'];
  const specs: Partial<CsvDataSpec>[] = [
    { header: false, skipRows: 1, label: 4 },
    { header: true, label: 'species' },
    { header: false, label: 0, missing: 'drop' },
    { header: false, skipRows: 1, label: 4, missing: 'mean', normalize: 'standard' },
    { header: true, label: 'species', features: ['sepal_length', 'petal_width'], missing: 'zero', normalize: 'minmax' },
    { header: false, skipRows: 2, label: 4, delimiter: ';' },
  ];
  const path = join(dir, 'fuzzed.csv');
  let loaded = 0;
  await check(
    fc.asyncProperty(
      fc.nat(texts.length - 1),
      fc.nat(specs.length - 1),
      fc.array(editArbitrary(cells, bytes), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      async (source, spec, edits, latin1) => {
        const text = edits.reduce(applyEdit, texts[source]!);
        // latin1 turns U+00FF into the byte 0xff: invalid UTF-8, as a Windows export would be.
        writeFileSync(path, Buffer.from(text, latin1 ? 'latin1' : 'utf8'));
        const options = { format: 'csv', path, label: 4, split: { validation: 0.2, test: 0.2 }, ...specs[spec] } as CsvDataSpec;
        try {
          const data = await loadDataset('fuzz', options, { baseDir: dir, seed: 1 });
          loaded++;
          for (const part of [data.train, data.validation, data.test]) {
            const i = part.x.findIndex((v) => !Number.isFinite(v));
            if (i >= 0) throw new Error(`loaded with feature value ${part.x[i]} at ${i}`);
          }
          // U+FFFD is what invalid UTF-8 decodes to: two different bytes would be one class.
          if (data.classes.some((c) => c.includes('\uFFFD') || c.includes('\0'))) throw new Error(`classes ${JSON.stringify(data.classes)}`);
        } catch (err) {
          expectPipelineError(err, [path]);
        }
      },
    ),
    CSV_RUNS,
    'CSV files',
  );
  assert.ok(loaded > 0, 'no mutated CSV loaded');
  assert.equal(unhandled, []);
});

test.run();
