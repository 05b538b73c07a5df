import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { applyPreprocessing, applyPreprocessingInPlace, fitPreprocessing } from '../../src/data/normalize.js';
import type { Preprocessing } from '../../src/data/types.js';
import { expectInputError } from './helpers.js';

// Two samples of three features; the last feature is constant.
const train = Float32Array.of(1, 10, 5, 3, 30, 5);

test('minmax: per-feature min and max; a constant feature gets max = min + 1', () => {
  const p = fitPreprocessing('minmax', train, 3, 'd');
  assert.equal(p, { kind: 'minmax', min: [1, 10, 5], max: [3, 30, 6] });
  assert.equal(Array.from(applyPreprocessing(train, [3], p)), [0, 0, 0, 1, 1, 0]);
});

test('standard: per-feature mean and population std; a constant feature gets std 1', () => {
  const p = fitPreprocessing('standard', train, 3, 'd');
  assert.equal(p, { kind: 'standard', mean: [2, 20, 5], std: [1, 10, 1] });
  assert.equal(Array.from(applyPreprocessing(train, [3], p)), [-1, -1, 0, 1, 1, 0]);
});

test('scale and none', () => {
  const p = fitPreprocessing({ scale: 255 }, train, 3, 'd');
  assert.equal(p, { kind: 'scale', scale: 255 });
  assert.equal(Array.from(applyPreprocessing(Float32Array.of(0, 255, 51), [3], p)), [0, 1, Math.fround(0.2)]);
  assert.equal(fitPreprocessing('none', train, 3, 'd'), { kind: 'none' });
});

test('applyPreprocessing leaves its input alone and matches the in-place variant', () => {
  const p = fitPreprocessing('standard', train, 3, 'd');
  const raw = Float32Array.of(0.5, 12, 7, 9, 9, 9);
  const copy = raw.slice();
  const out = applyPreprocessing(raw, [3, 1], p);
  assert.equal(raw, copy);
  applyPreprocessingInPlace(copy, 3, p);
  assert.equal(out, copy);
});

test('mismatched shapes and bad options are input errors', async () => {
  const p: Preprocessing = { kind: 'minmax', min: [0, 0], max: [1, 1] };
  await expectInputError(async () => applyPreprocessing(Float32Array.of(1, 2, 3), [2], p), ['whole samples of 2 values', 'found 3']);
  await expectInputError(async () => applyPreprocessing(Float32Array.of(1, 2, 3), [3], p), ['constants for 3 features, found 2']);
  await expectInputError(async () => fitPreprocessing({ scale: 0 }, train, 3, 'd'), ['data set "d"', 'normalize.scale is 0']);
  await expectInputError(async () => fitPreprocessing('zscore' as 'standard', train, 3, 'd'), ['"zscore"', '"minmax", "standard"']);
});

test.run();
