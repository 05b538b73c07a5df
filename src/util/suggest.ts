// "Did you mean" for misspelled keys and enum values. Case, '-' and '_' are ignored first because
// batch_size / batchsize / batch-size for batchSize are the most common slips of all.
import { distance } from 'fastest-levenshtein';

function normalize(s: string): string {
  return s.toLowerCase().replace(/[-_\s]/g, '');
}

function sameLetters(a: string, b: string): boolean {
  return a.length === b.length && [...a].sort().join('') === [...b].sort().join('');
}

/** The candidate the user most likely meant, or undefined when none is close enough to be a good guess. */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = normalize(word);
  if (!w) return undefined;
  let best: string | undefined;
  let bestScore = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const c = normalize(candidate);
    const longer = Math.max(w.length, c.length);
    // Short words are one edit from many others; allow fewer edits so guesses stay plausible.
    const limit = longer <= 4 ? 1 : longer <= 7 ? 2 : 3;
    let score: number;
    if (c === w) {
      score = 0;
    } else if (sameLetters(c, w)) {
      // Swapped letters (nte / net) are one slip of the fingers but two Levenshtein edits.
      score = 1;
    } else {
      const d = distance(w, c);
      if (d <= limit) score = d;
      else if (w.length >= 3 && c.startsWith(w)) score = limit + 0.5;
      else if (c.length >= 3 && w.startsWith(c)) score = limit + 0.6;
      else continue;
    }
    if (score < bestScore) {
      best = candidate;
      bestScore = score;
    }
  }
  return best;
}

/** `; did you mean "x"?` or nothing. */
export function didYouMeanSuffix(word: string, candidates: readonly string[]): string {
  const guess = didYouMean(word, candidates);
  return guess === undefined ? '' : `; did you mean ${JSON.stringify(guess)}?`;
}
