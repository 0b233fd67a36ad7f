/**
 * Edit distance with adjacent transpositions counted as one edit (optimal
 * string alignment), for "did you mean" hints: "locla" is one edit from "local".
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) distance = Math.min(distance, (before[j - 2] ?? 0) + 1);
      current.push(distance);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The candidate `word` is most likely a misspelling of: case aside equal, or
 * within a third of its length in edits (at least 1, at most 3). Undefined
 * when nothing is that close, so a hint is never a wild guess.
 */
export function closestName(word: string, candidates: Iterable<string>): string | undefined {
  if (word.length > 200) return undefined;
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) continue;
    const distance = editDistance(lower, candidate.toLowerCase());
    const allowed = Math.min(3, Math.max(1, Math.floor(candidate.length / 3)));
    if (distance <= allowed && distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** " (did you mean X?)"-style hint text, or undefined. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  const close = closestName(word, candidates);
  return close === undefined ? undefined : `did you mean ${close}?`;
}
