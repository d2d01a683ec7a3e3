/**
 * The score of a visitor with several faces in 1:N search (IDENTIFY_SCORING): the
 * similarity to their template, the normalised mean of their faces ('fused'), or to their
 * most similar face ('best').
 */
export type VisitorScoring = 'fused' | 'best';

/**
 * Default 1:N identification thresholds (cosine similarity) per embedder model and
 * scoring: a probe is named as its best visitor only at or above this value. They are
 * higher than the 1:1 verification thresholds because the chance that a stranger
 * resembles a visitor grows with the gallery.
 *
 * mobilefacenet: `npm run bench:identify` (LFW, 158 visitors with 3 photos each, 790
 * genuine probes, 1,522 strangers). Fused: 0.42 is the lowest threshold that accepts at
 * most 1 % of strangers (97.72 % identified, 0.92 % of strangers accepted). Every
 * threshold from 0.41 to 0.45 keeps 97 % and 2 %. Best face: 97.34 % and 1.31 % at 0.43.
 * With 10,000 or more visitors the same rate of strangers needs about 0.50
 * (benchmarks/RESULTS.md); set IDENTIFY_THRESHOLD for large galleries.
 *
 * mobilefacenet_int8, the same benchmark: fused 0.43 is the lowest threshold with at most 1 %
 * of strangers (97.59 % identified, 0.66 % accepted). Best face: 97.22 % and 1.31 % at 0.43.
 */
export const DEFAULT_IDENTIFY_THRESHOLDS: Readonly<
  Record<string, Readonly<Record<VisitorScoring, number>>>
> = {
  mobilefacenet_foamliu_128d: { fused: 0.42, best: 0.43 },
  mobilefacenet_foamliu_128d_int8: { fused: 0.43, best: 0.43 },
  // NOTE: not measured here (SFace weights unavailable); OpenCV's 1:1 value 0.363 plus the same margin.
  sface_2021dec: { fused: 0.5, best: 0.5 },
  sface_2021dec_int8: { fused: 0.5, best: 0.5 },
};

export function defaultIdentifyThreshold(modelId: string, scoring: VisitorScoring): number {
  const threshold = DEFAULT_IDENTIFY_THRESHOLDS[modelId]?.[scoring];
  if (threshold === undefined)
    throw new Error(`no identification threshold is defined for model '${modelId}'`);
  return threshold;
}
