import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mapLimit } from '../../src/util/concurrency.js';
import { rejects } from '../helpers.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('results come back in input order with at most `limit` calls in flight', async () => {
  let inFlight = 0;
  let most = 0;
  const results = await mapLimit([5, 1, 4, 2, 3, 6, 7], 3, async (n) => {
    most = Math.max(most, ++inFlight);
    for (let i = 0; i < n; i++) await tick();
    inFlight--;
    return n * 10;
  });
  assert.equal(results, [50, 10, 40, 20, 30, 60, 70]);
  assert.is(most, 3);
});

test('a failure rejects only once every started call has settled, and starts no new ones', async () => {
  const finished: number[] = [];
  await rejects(
    () =>
      mapLimit([1, 2, 3, 4, 5], 2, async (n) => {
        if (n === 1) throw new Error('first failed');
        for (let i = 0; i < 5; i++) await tick();
        finished.push(n);
      }),
    'first failed',
  );
  assert.equal(finished, [2]);
});

test.run();
