/**
 * The real embeddings that shape the synthetic distractors, and the table that
 * shows how close each kind of distractor comes to real strangers.
 */
import { MIXTURE_NOISE_SCALE, fitGaussianIdentityModel } from './distractors.js';
import type { GaussianIdentityModel } from './distractors.js';
import { photoOf, vectorsOf } from './lfw-cohorts.js';
import type { LfwCohorts } from './lfw-cohorts.js';
import { markdownTable, percent } from './markdown.js';
import { packVectors } from './similarity-scan.js';
import { ksDistance, quantile, summariseSimilarities } from './similarity-stats.js';

const SIMILARITY_THRESHOLDS = [0.3, 0.4, 0.5] as const;

export interface DistractorSources {
  /** One photo each of the people with a single LFW photo: mean and total covariance. */
  singlePhotos: Float32Array[];
  /** Every photo of each stranger: within-person covariance, and photo 1 as the real strangers. */
  strangerGroups: Float32Array[][];
  /** Photo 1 of each stranger, packed. */
  realStrangers: Float32Array;
  model: GaussianIdentityModel;
}

export function distractorSources(cohorts: LfwCohorts, dim: number): DistractorSources {
  const singlePhotos = vectorsOf(
    cohorts.singlePhotoPeople.flatMap((person) => cohorts.photosByPerson.get(person)!),
  );
  const strangerGroups = cohorts.strangerPeople.map((person) =>
    vectorsOf(cohorts.photosByPerson.get(person)!),
  );
  const realStrangers = packVectors(
    cohorts.strangerPeople.flatMap((person) => {
      const vector = photoOf(cohorts, person, 1).vector;
      return vector ? [vector] : [];
    }),
    dim,
  );
  return {
    singlePhotos,
    strangerGroups,
    realStrangers,
    model: fitGaussianIdentityModel(singlePhotos, strangerGroups, dim),
  };
}

/** Describes in one paragraph how the distractors are drawn, for the benchmark output. */
export function describeDistractors(sources: DistractorSources, seed: number): string {
  const { model } = sources;
  const groupCount = sources.strangerGroups.filter((group) => group.length > 1).length;
  return (
    `Distractors: gaussian = identity centre ~ N(mean, between-person covariance), each face ` +
    `normalise(centre + N(0, within-person covariance)); mean and total covariance from ` +
    `${sources.singlePhotos.length} people with a single LFW photo, within-person covariance from the ` +
    `photos of ${groupCount} strangers (total variance ${model.totalVariance.toFixed(3)}, within ` +
    `${model.withinVariance.toFixed(3)}, between-person eigenvalues clipped at 0: ` +
    `${percent(model.identity.clippedVarianceShare, 2)} of the variance). mixture = convex combination ` +
    `of 3 single-photo embeddings (weights uniform on the simplex) + noise at ${MIXTURE_NOISE_SCALE} x ` +
    `their standard deviation, normalised. Seed ${seed}.`
  );
}

/**
 * Prints how the similarities of `probes` to each candidate set compare with
 * their similarities to real strangers, on as many rows as there are real strangers.
 */
export function printRealismTable(
  probes: Float32Array,
  dim: number,
  realStrangers: Float32Array,
  candidates: ReadonlyArray<readonly [string, Float32Array]>,
): void {
  const rowCount = realStrangers.length / dim;
  const real = summariseSimilarities(probes, realStrangers, dim, SIMILARITY_THRESHOLDS);
  const summaries = [
    ['real strangers (photo 1)', real] as const,
    ...candidates.map(
      ([name, matrix]) =>
        [
          name,
          summariseSimilarities(
            probes,
            matrix.subarray(0, rowCount * dim),
            dim,
            SIMILARITY_THRESHOLDS,
          ),
        ] as const,
    ),
  ];

  const headers = [
    'rows',
    'mean',
    'std',
    'p99',
    'p99.9',
    'max',
    ...SIMILARITY_THRESHOLDS.map((threshold) => `pairs >= ${threshold.toFixed(2)}`),
    'nearest p50',
    'nearest p99',
    'KS vs real',
  ];
  const rows = summaries.map(([name, summary]) => [
    name,
    summary.mean.toFixed(4),
    summary.standardDeviation.toFixed(4),
    summary.p99.toFixed(3),
    summary.p999.toFixed(3),
    summary.max.toFixed(3),
    ...summary.pairRatesAbove.map((rate) => percent(rate, 3)),
    summary.nearestP50.toFixed(3),
    summary.nearestP99.toFixed(3),
    summary === real ? '-' : ksDistance(real.sorted, summary.sorted).toFixed(4),
  ]);

  console.log(
    `Similarity of ${probes.length / dim} genuine probes to ${rowCount} rows of each kind ` +
      `("nearest": each probe's highest similarity to those rows; KS: Kolmogorov-Smirnov distance ` +
      `between the pair similarity distributions):`,
  );
  console.log('');
  console.log(markdownTable(headers, rows));
  console.log('');
}

/** Quantiles (10%, 50%, 90%) of the similarity between the first two faces of each group. */
export function firstPairQuantiles(groups: readonly (readonly Float32Array[])[]): number[] {
  const similarities = groups
    .filter((group) => group.length >= 2)
    .map(([a, b]) => {
      let dot = 0;
      for (let i = 0; i < a!.length; i += 1) dot += a![i]! * b![i]!;
      return dot;
    })
    .sort((x, y) => x - y);
  return [0.1, 0.5, 0.9].map((q) => quantile(similarities, q));
}
