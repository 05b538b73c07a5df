import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createRng } from '../../src/random.js';
import { compose, gather, resolveSplitSize, seededSplit, seededSubset } from '../../src/data/split.js';
import { expectInputError } from './helpers.js';

function sorted(a: Int32Array): number[] {
  return Array.from(a).sort((p, q) => p - q);
}

test('fractions round to samples; counts are taken as they are', () => {
  assert.is(resolveSplitSize(0.1, 0.5, 1797, 'split.validation', 'd'), 180);
  assert.is(resolveSplitSize(undefined, 0.2, 150, 'split.test', 'd'), 30);
  assert.is(resolveSplitSize(0, 0.2, 150, 'split.test', 'd'), 0);
  assert.is(resolveSplitSize(40, 0.2, 150, 'split.test', 'd'), 40);
});

test('bad sizes are rejected with the option named', async () => {
  await expectInputError(async () => resolveSplitSize(-0.1, 0.1, 10, 'split.validation', 'd'), ['data set "d"', 'split.validation', '-0.1']);
  await expectInputError(async () => resolveSplitSize(2.5, 0.1, 10, 'split.test', 'd'), ['split.test is 2.5', 'whole number']);
  await expectInputError(async () => seededSplit(10, { validation: 5, test: 5 }, createRng(1, 'split:d'), 'd'), ['leaving none to train on']);
  await expectInputError(async () => seededSubset(10, 11, createRng(1, 'subset:d'), 'limit', 'd'), ['limit asks for 11', 'only 10']);
});

test('a split is disjoint and complete, and the same seed gives the same split', () => {
  const a = seededSplit(1797, { validation: 180, test: 359 }, createRng(7, 'split:digits'), 'digits');
  assert.is(a.test.length, 359);
  assert.is(a.validation.length, 180);
  assert.is(a.train.length, 1797 - 539);
  const all = sorted(Int32Array.from([...a.train, ...a.validation, ...a.test]));
  assert.equal(all, Array.from({ length: 1797 }, (_, i) => i));
  const b = seededSplit(1797, { validation: 180, test: 359 }, createRng(7, 'split:digits'), 'digits');
  assert.equal(b, a);
  const c = seededSplit(1797, { validation: 180, test: 359 }, createRng(8, 'split:digits'), 'digits');
  assert.not.equal(sorted(c.test), sorted(a.test));
  // The purpose keeps two data sets with one seed apart.
  const d = seededSplit(1797, { validation: 180, test: 359 }, createRng(7, 'split:other'), 'other');
  assert.not.equal(sorted(d.test), sorted(a.test));
});

test('changing only the validation size keeps the test set', () => {
  const a = seededSplit(500, { validation: 50, test: 100 }, createRng(3, 'split:x'), 'x');
  const b = seededSplit(500, { validation: 80, test: 100 }, createRng(3, 'split:x'), 'x');
  assert.equal(b.test, a.test);
});

test('subsets are sorted, distinct and seeded; compose maps back to the full table', () => {
  const s = seededSubset(60000, 2000, createRng(1, 'subset:f:train'), 'subset.train', 'f');
  assert.is(s.length, 2000);
  assert.is(new Set(s).size, 2000);
  assert.equal(Array.from(s), sorted(s));
  assert.equal(seededSubset(60000, 2000, createRng(1, 'subset:f:train'), 'subset.train', 'f'), s);
  assert.equal(Array.from(compose(Int32Array.of(10, 20, 30), Int32Array.of(2, 0))), [30, 10]);
});

test('gather copies whole samples, from float or uint8 sources', () => {
  const x = Uint8Array.of(1, 2, 3, 4, 5, 6);
  const y = Uint8Array.of(7, 8, 9);
  const part = gather(x, y, 2, Int32Array.of(2, 0));
  assert.equal(Array.from(part.x), [5, 6, 1, 2]);
  assert.equal(Array.from(part.y), [9, 7]);
  assert.is(part.count, 2);
  assert.ok(part.x instanceof Float32Array && part.y instanceof Int32Array);
});

test.run();
