import seedrandom from 'seedrandom';

// One seeded generator per purpose ("split:fashion", "shuffle:teacher"...) so that changing one
// use of randomness (say, the number of epochs) never shifts another (the data split).

export type Rng = () => number;

export function createRng(seed: number, purpose: string): Rng {
  return seedrandom.alea(`${seed}:${purpose}`);
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, rng: Rng): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/**
 * Runs `fn` with Math.random replaced by a seeded generator. tfjs draws the seeds of unseeded
 * initializers and of every dropout mask from Math.random, so this is what makes a seeded run
 * reproduce bit for bit; the original is restored afterwards, also when `fn` throws.
 */
export async function withSeededMathRandom<T>(seed: number, purpose: string, fn: () => Promise<T>): Promise<T> {
  const original = Math.random;
  Math.random = createRng(seed, purpose);
  try {
    return await fn();
  } finally {
    Math.random = original;
  }
}
