/**
 * Default 1:N identification thresholds (cosine similarity) per embedder model:
 * a probe is named as its best visitor only at or above this value. They are
 * higher than the 1:1 verification thresholds because the chance that a
 * stranger resembles somebody grows with the gallery.
 *
 * mobilefacenet: `npm run bench:identify` (LFW, 158 visitors with 3 photos each,
 * scored by their best photo, 790 genuine probes, 1,522 strangers) gives 97.34%
 * identified and 1.31% of strangers accepted at 0.43; 0.40 accepts 4.66%.
 * With 10,000 or more visitors the same rate of strangers needs about 0.50
 * (benchmarks/RESULTS.md); set IDENTIFY_THRESHOLD for large galleries.
 */
export const DEFAULT_IDENTIFY_THRESHOLDS: Readonly<Record<string, number>> = {
  mobilefacenet_foamliu_128d: 0.43,
  // NOTE: not measured here (SFace weights unavailable); OpenCV's 1:1 value 0.363 plus the same margin.
  sface_2021dec: 0.5,
  sface_2021dec_int8: 0.5,
};

export function defaultIdentifyThreshold(modelId: string): number {
  const threshold = DEFAULT_IDENTIFY_THRESHOLDS[modelId];
  if (threshold === undefined)
    throw new Error(`no identification threshold is defined for model '${modelId}'`);
  return threshold;
}
