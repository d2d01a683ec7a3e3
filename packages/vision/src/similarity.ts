/** Cosine similarity of two L2-normalised vectors (their dot product), in [-1, 1]. */
export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) {
    throw new Error(`vectors have ${a.length} and ${b.length} dimensions; they must match`);
  }
  let dot = 0;
  for (let i = 0; i < a.length; i += 1) dot += a[i]! * b[i]!;
  return dot;
}

/**
 * Default 1:1 verification thresholds (cosine similarity) per embedder model.
 * mobilefacenet: the threshold with the best accuracy over all 6,000 LFW View 2
 * pairs through this pipeline (`npm run bench:accuracy`), for the float and the int8 model
 * alike (best single thresholds 0.26 and 0.2604). SFace: the value
 * OpenCV's FaceRecognizerSF documentation suggests (0.363), not re-measured here.
 */
export const DEFAULT_VERIFY_THRESHOLDS: Readonly<Record<string, number>> = {
  mobilefacenet_foamliu_128d: 0.26,
  mobilefacenet_foamliu_128d_int8: 0.26,
  sface_2021dec: 0.363,
  sface_2021dec_int8: 0.363,
};

export function defaultVerifyThreshold(modelId: string): number {
  const threshold = DEFAULT_VERIFY_THRESHOLDS[modelId];
  if (threshold === undefined)
    throw new Error(`no verification threshold is defined for model '${modelId}'`);
  return threshold;
}
