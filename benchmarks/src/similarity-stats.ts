/**
 * Summaries of similarity distributions, used to check that synthetic
 * distractors look like real strangers to a set of probe faces.
 */

export interface SimilaritySummary {
  pairCount: number;
  mean: number;
  standardDeviation: number;
  p99: number;
  p999: number;
  max: number;
  /** Share of probe-row pairs at or above each of the requested thresholds. */
  pairRatesAbove: number[];
  /** Median and 99th percentile over probes of their highest similarity to any row. */
  nearestP50: number;
  nearestP99: number;
  /** Every probe-row similarity, sorted ascending, for distribution distances. */
  sorted: Float32Array;
}

/** Summarises the similarities of every probe (row of `probes`) to every row of `rows`. */
export function summariseSimilarities(
  probes: Float32Array,
  rows: Float32Array,
  dim: number,
  thresholds: readonly number[],
): SimilaritySummary {
  const probeCount = probes.length / dim;
  const rowCount = rows.length / dim;
  const all = new Float32Array(probeCount * rowCount);
  const nearest = new Float32Array(probeCount);
  let sum = 0;
  let squares = 0;

  for (let p = 0; p < probeCount; p += 1) {
    const probeOffset = p * dim;
    let best = -Infinity;
    for (let r = 0; r < rowCount; r += 1) {
      const rowOffset = r * dim;
      let dot = 0;
      for (let i = 0; i < dim; i += 1) dot += probes[probeOffset + i]! * rows[rowOffset + i]!;
      all[p * rowCount + r] = dot;
      sum += dot;
      squares += dot * dot;
      if (dot > best) best = dot;
    }
    nearest[p] = best;
  }

  all.sort();
  nearest.sort();
  const mean = sum / all.length;
  return {
    pairCount: all.length,
    mean,
    standardDeviation: Math.sqrt(Math.max(0, squares / all.length - mean * mean)),
    p99: quantile(all, 0.99),
    p999: quantile(all, 0.999),
    max: all[all.length - 1] ?? NaN,
    pairRatesAbove: thresholds.map((threshold) => 1 - countBelow(all, threshold) / all.length),
    nearestP50: quantile(nearest, 0.5),
    nearestP99: quantile(nearest, 0.99),
    sorted: all,
  };
}

/** The value at quantile q (0-1) of an ascending array, by the nearest-rank method. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

/** Number of values strictly below `value` in an ascending array (binary search). */
export function countBelow(sorted: ArrayLike<number>, value: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (sorted[middle]! < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs. */
export function ksDistance(sortedA: ArrayLike<number>, sortedB: ArrayLike<number>): number {
  let a = 0;
  let b = 0;
  let largest = 0;
  while (a < sortedA.length && b < sortedB.length) {
    const value = Math.min(sortedA[a]!, sortedB[b]!);
    while (a < sortedA.length && sortedA[a]! <= value) a += 1;
    while (b < sortedB.length && sortedB[b]! <= value) b += 1;
    largest = Math.max(largest, Math.abs(a / sortedA.length - b / sortedB.length));
  }
  return largest;
}
