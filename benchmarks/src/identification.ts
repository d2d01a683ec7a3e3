/**
 * Counting for 1:N identification benchmarks: enrolment templates per policy,
 * the best gallery identity of each probe, and the identification and
 * false-accept rates at a threshold. Pure functions, so tests can feed them
 * known similarities.
 */
import { bestRows, packVectors } from './similarity-scan.js';

/**
 * The rule that turns a visitor's enrolment photos into gallery templates.
 * `one-photo` keeps the first photo only. `best-of-3` keeps every photo and
 * scores a visitor by its best face, as the service's face index does.
 * `fused` keeps one template, the renormalised mean of the photos.
 */
export type EnrolmentPolicy = 'one-photo' | 'best-of-3' | 'fused';

export const ENROLMENT_POLICIES: readonly EnrolmentPolicy[] = ['one-photo', 'best-of-3', 'fused'];

/** One gallery vector and the identity it belongs to. */
export interface Template {
  identity: string;
  vector: Float32Array;
}

/** A probe face: the identity it shows when enrolled, or undefined for a stranger. */
export interface Probe {
  identity: string | undefined;
  /** Undefined when no face was found; such a probe is never accepted. */
  vector: Float32Array | undefined;
}

/** The best gallery identity of one probe. */
export interface ProbeOutcome {
  expectedIdentity: string | undefined;
  bestIdentity: string | undefined;
  /** Similarity to the best identity; -Infinity when the probe has no face or the gallery is empty. */
  similarity: number;
}

export interface ThresholdRates {
  threshold: number;
  /** Enrolled probes whose best identity is right and at or above the threshold, over all enrolled probes. */
  genuineIdentifiedRate: number;
  /** Enrolled probes named as another identity at or above the threshold, over all enrolled probes. */
  genuineMisidentifiedRate: number;
  /** Strangers whose best identity is at or above the threshold, over all strangers. */
  strangerAcceptRate: number;
  genuineCount: number;
  strangerCount: number;
}

/** Returns the L2-normalised mean of unit vectors. */
export function fuseVectors(vectors: readonly Float32Array[]): Float32Array {
  if (vectors.length === 0) throw new RangeError('cannot fuse an empty list of vectors');
  const dim = vectors[0]!.length;
  const sum = new Float64Array(dim);
  for (const vector of vectors) {
    if (vector.length !== dim)
      throw new RangeError(`vectors have ${vector.length} and ${dim} dimensions`);
    for (let i = 0; i < dim; i += 1) sum[i]! += vector[i]!;
  }
  return normalise(sum);
}

export function normalise(vector: ArrayLike<number>): Float32Array {
  let squares = 0;
  for (let i = 0; i < vector.length; i += 1) squares += vector[i]! * vector[i]!;
  const norm = Math.sqrt(squares);
  if (!(norm > 0)) throw new RangeError('cannot normalise a zero or non-finite vector');
  const unit = new Float32Array(vector.length);
  for (let i = 0; i < vector.length; i += 1) unit[i] = vector[i]! / norm;
  return unit;
}

/**
 * Turns each identity's enrolment vectors (in enrolment order) into gallery
 * templates under `policy`. Best-of-3 keeps at most the first three.
 */
export function enrolmentTemplates(
  policy: EnrolmentPolicy,
  enrolments: ReadonlyMap<string, readonly Float32Array[]>,
): Template[] {
  const templates: Template[] = [];
  for (const [identity, vectors] of enrolments) {
    if (vectors.length === 0) continue;
    if (policy === 'one-photo') templates.push({ identity, vector: vectors[0]! });
    else if (policy === 'best-of-3')
      for (const vector of vectors.slice(0, 3)) templates.push({ identity, vector });
    else templates.push({ identity, vector: fuseVectors(vectors.slice(0, 3)) });
  }
  return templates;
}

/** Scores every probe against every template by exact search and keeps its best identity. */
export function identifyProbes(
  templates: readonly Template[],
  probes: readonly Probe[],
  dim: number,
): ProbeOutcome[] {
  const withFace = probes.filter((probe) => probe.vector !== undefined);
  const best =
    templates.length === 0 || withFace.length === 0
      ? undefined
      : bestRows(
          packVectors(
            withFace.map((probe) => probe.vector!),
            dim,
          ),
          packVectors(
            templates.map((template) => template.vector),
            dim,
          ),
          dim,
        );

  let position = 0;
  return probes.map((probe): ProbeOutcome => {
    if (probe.vector === undefined || best === undefined) {
      return { expectedIdentity: probe.identity, bestIdentity: undefined, similarity: -Infinity };
    }
    const row = best.rows[position]!;
    const similarity = best.scores[position]!;
    position += 1;
    return { expectedIdentity: probe.identity, bestIdentity: templates[row]!.identity, similarity };
  });
}

/** Identity of every synthetic distractor; never the identity of a probe. */
export const DISTRACTOR_IDENTITY = '<distractor>';

/**
 * Adds distractors to a gallery after the fact: `distractorScores[i]` is probe i's
 * best similarity to any distractor (-Infinity for none). A distractor that beats
 * the probe's best real identity becomes its best identity.
 */
export function withDistractors(
  outcomes: readonly ProbeOutcome[],
  distractorScores: ArrayLike<number>,
): ProbeOutcome[] {
  if (distractorScores.length !== outcomes.length) {
    throw new RangeError(
      `${distractorScores.length} distractor scores for ${outcomes.length} probes`,
    );
  }
  return outcomes.map((outcome, i) => {
    const score = distractorScores[i]!;
    if (!(score > outcome.similarity)) return outcome;
    return { ...outcome, bestIdentity: DISTRACTOR_IDENTITY, similarity: score };
  });
}

/** Counts the identification outcomes at one threshold; a probe is accepted at similarity >= threshold. */
export function ratesAtThreshold(
  outcomes: readonly ProbeOutcome[],
  threshold: number,
): ThresholdRates {
  let genuineCount = 0;
  let identified = 0;
  let misidentified = 0;
  let strangerCount = 0;
  let strangersAccepted = 0;

  for (const outcome of outcomes) {
    const accepted = outcome.bestIdentity !== undefined && outcome.similarity >= threshold;
    if (outcome.expectedIdentity === undefined) {
      strangerCount += 1;
      if (accepted) strangersAccepted += 1;
      continue;
    }
    genuineCount += 1;
    if (!accepted) continue;
    if (outcome.bestIdentity === outcome.expectedIdentity) identified += 1;
    else misidentified += 1;
  }

  return {
    threshold,
    genuineIdentifiedRate: ratio(identified, genuineCount),
    genuineMisidentifiedRate: ratio(misidentified, genuineCount),
    strangerAcceptRate: ratio(strangersAccepted, strangerCount),
    genuineCount,
    strangerCount,
  };
}

/** Thresholds from `from` to `to` inclusive, rounded to the step's decimals so 0.1 + 0.2 prints as 0.3. */
export function thresholdSteps(from: number, to: number, step: number): number[] {
  if (!(step > 0) || to < from)
    throw new RangeError(`invalid threshold range ${from}..${to} step ${step}`);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  const count = Math.floor((to - from) / step + 1e-9);
  return Array.from({ length: count + 1 }, (_, i) => Number((from + i * step).toFixed(decimals)));
}

/** Finds the lowest threshold of `rows` whose stranger accept rate is at most `maxStrangerAcceptRate`. */
export function lowestThresholdWithin(
  rows: readonly ThresholdRates[],
  maxStrangerAcceptRate: number,
): ThresholdRates | undefined {
  return [...rows]
    .sort((a, b) => a.threshold - b.threshold)
    .find((row) => row.strangerAcceptRate <= maxStrangerAcceptRate);
}

/** Selects the thresholds of `rows` that meet both floors, lowest first. */
export function thresholdsMeeting(
  rows: readonly ThresholdRates[],
  floors: { minGenuineIdentifiedRate: number; maxStrangerAcceptRate: number },
): ThresholdRates[] {
  return rows
    .filter(
      (row) =>
        row.genuineIdentifiedRate >= floors.minGenuineIdentifiedRate &&
        row.strangerAcceptRate <= floors.maxStrangerAcceptRate,
    )
    .sort((a, b) => a.threshold - b.threshold);
}

function ratio(count: number, total: number): number {
  return total === 0 ? 0 : count / total;
}
