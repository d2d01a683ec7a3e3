import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  DISTRACTOR_IDENTITY,
  enrolmentTemplates,
  fuseVectors,
  identifyProbes,
  lowestThresholdWithin,
  ratesAtThreshold,
  thresholdSteps,
  thresholdsMeeting,
  withDistractors,
} from '../src/identification.js';
import type { ProbeOutcome, ThresholdRates } from '../src/identification.js';
import { bestRowsAtCheckpoints } from '../src/similarity-scan.js';

function unit(...values: number[]): Float32Array {
  const norm = Math.hypot(...values);
  return Float32Array.from(values, (value) => value / norm);
}

function genuine(expected: string, best: string | undefined, similarity: number): ProbeOutcome {
  return { expectedIdentity: expected, bestIdentity: best, similarity };
}

function stranger(best: string | undefined, similarity: number): ProbeOutcome {
  return { expectedIdentity: undefined, bestIdentity: best, similarity };
}

// Four genuine probes (right, right, wrong person, no face) and three strangers (one without a face).
const OUTCOMES: ProbeOutcome[] = [
  genuine('ann', 'ann', 0.5),
  genuine('bob', 'bob', 0.45),
  genuine('cid', 'dan', 0.6),
  genuine('eve', undefined, -Infinity),
  stranger('ann', 0.44),
  stranger('bob', 0.39),
  stranger(undefined, -Infinity),
];

test('rates count each outcome kind', () => {
  const rates = ratesAtThreshold(OUTCOMES, 0.45);

  assert.equal(rates.genuineCount, 4);
  assert.equal(rates.strangerCount, 3);
  assert.equal(rates.genuineIdentifiedRate, 2 / 4);
  assert.equal(rates.genuineMisidentifiedRate, 1 / 4);
  assert.equal(rates.strangerAcceptRate, 0);
});

test('rates accept a similarity equal to the threshold', () => {
  const atBob = ratesAtThreshold(OUTCOMES, 0.45);
  const justAboveBob = ratesAtThreshold(OUTCOMES, 0.4501);
  const atStranger = ratesAtThreshold(OUTCOMES, 0.44);

  assert.equal(atBob.genuineIdentifiedRate, 0.5);
  assert.equal(justAboveBob.genuineIdentifiedRate, 0.25);
  assert.equal(atStranger.strangerAcceptRate, 1 / 3);
});

test('rates never accept a probe without a face', () => {
  const rates = ratesAtThreshold(OUTCOMES, -1);

  assert.equal(rates.genuineIdentifiedRate, 2 / 4);
  assert.equal(rates.genuineMisidentifiedRate, 1 / 4);
  assert.equal(rates.strangerAcceptRate, 2 / 3);
});

test('rates of an empty list are zero', () => {
  const rates = ratesAtThreshold([], 0.4);

  assert.equal(rates.genuineIdentifiedRate, 0);
  assert.equal(rates.strangerAcceptRate, 0);
});

test('threshold steps include both ends exactly', () => {
  const steps = thresholdSteps(0.3, 0.6, 0.01);

  assert.equal(steps.length, 31);
  assert.equal(steps[0], 0.3);
  assert.equal(steps[15], 0.45);
  assert.equal(steps[30], 0.6);
});

test('threshold steps reject an empty range', () => {
  assert.throws(() => thresholdSteps(0.6, 0.3, 0.01), RangeError);
  assert.throws(() => thresholdSteps(0.3, 0.6, 0), RangeError);
});

test('fused template is the normalised mean', () => {
  const fused = fuseVectors([unit(1, 0), unit(0, 1)]);

  assert.ok(Math.abs(fused[0]! - Math.SQRT1_2) < 1e-6);
  assert.ok(Math.abs(fused[1]! - Math.SQRT1_2) < 1e-6);
});

test('templates follow the enrolment policy', () => {
  const enrolments = new Map([
    ['ann', [unit(1, 0), unit(0, 1), unit(-1, 0), unit(0, -1)]],
    ['bob', [unit(1, 1)]],
  ]);

  const onePhoto = enrolmentTemplates('one-photo', enrolments);
  const bestOfThree = enrolmentTemplates('best-of-3', enrolments);
  const fused = enrolmentTemplates('fused', enrolments);

  assert.deepEqual(
    onePhoto.map((template) => template.identity),
    ['ann', 'bob'],
  );
  assert.deepEqual(
    bestOfThree.map((template) => template.identity),
    ['ann', 'ann', 'ann', 'bob'],
  );
  assert.equal(fused.length, 2);
  // Photos 1-3 of ann average to (0, 1/3); the fourth photo is not enrolled.
  assert.ok(Math.abs(fused[0]!.vector[0]!) < 1e-6);
  assert.ok(Math.abs(fused[0]!.vector[1]! - 1) < 1e-6);
});

test('identify finds the best identity by exact search', () => {
  const templates = [
    { identity: 'ann', vector: unit(1, 0) },
    { identity: 'bob', vector: unit(0, 1) },
    { identity: 'ann', vector: unit(1, 1) },
  ];
  const probes = [
    { identity: 'ann', vector: unit(0.8, 0.6) },
    { identity: 'bob', vector: unit(-0.1, 1) },
    { identity: undefined, vector: unit(-1, 0) },
    { identity: 'cid', vector: undefined },
    { identity: 'ann', vector: unit(1, 1) },
  ];

  const outcomes = identifyProbes(templates, probes, 2);

  assert.deepEqual(
    outcomes.map((outcome) => outcome.bestIdentity),
    ['ann', 'bob', 'bob', undefined, 'ann'],
  );
  // Probe 1 is closer to ann's second face (cos 0.99) than to her first (0.8).
  assert.ok(Math.abs(outcomes[0]!.similarity - (0.8 + 0.6) / Math.SQRT2) < 1e-6);
  assert.ok(Math.abs(outcomes[2]!.similarity) < 1e-6);
  assert.equal(outcomes[3]!.similarity, -Infinity);
  assert.equal(outcomes[3]!.expectedIdentity, 'cid');
});

test('best of three identifies where one photo fails', () => {
  const enrolments = new Map([
    ['ann', [unit(1, 0, 0), unit(0, 0, 1)]],
    ['bob', [unit(0, 1, 0)]],
  ]);
  const probes = [{ identity: 'ann', vector: unit(0, 0.5, 1) }];

  const [onePhoto] = identifyProbes(enrolmentTemplates('one-photo', enrolments), probes, 3);
  const [bestOfThree] = identifyProbes(enrolmentTemplates('best-of-3', enrolments), probes, 3);

  assert.equal(onePhoto!.bestIdentity, 'bob');
  assert.equal(bestOfThree!.bestIdentity, 'ann');
});

test('distractor that beats the gallery is accepted', () => {
  const outcomes = [genuine('ann', 'ann', 0.5), stranger('ann', 0.3), stranger('bob', 0.35)];

  const grown = withDistractors(outcomes, [0.55, 0.46, -Infinity]);
  const rates = ratesAtThreshold(grown, 0.45);

  assert.equal(grown[0]!.bestIdentity, DISTRACTOR_IDENTITY);
  assert.equal(grown[2]!.bestIdentity, 'bob');
  assert.equal(rates.genuineIdentifiedRate, 0);
  assert.equal(rates.genuineMisidentifiedRate, 1);
  assert.equal(rates.strangerAcceptRate, 1 / 2);
});

test('distractor scores must match the probes', () => {
  assert.throws(() => withDistractors(OUTCOMES, [0.1]), RangeError);
});

function rates(threshold: number, genuineRate: number, strangerRate: number): ThresholdRates {
  return {
    threshold,
    genuineIdentifiedRate: genuineRate,
    genuineMisidentifiedRate: 0,
    strangerAcceptRate: strangerRate,
    genuineCount: 100,
    strangerCount: 100,
  };
}

test('threshold choice respects both floors', () => {
  const rows = [
    rates(0.42, 0.99, 0.03),
    rates(0.4, 0.995, 0.05),
    rates(0.44, 0.975, 0.01),
    rates(0.43, 0.98, 0.015),
    rates(0.45, 0.96, 0.0),
  ];

  const lowest = lowestThresholdWithin(rows, 0.01);
  const meeting = thresholdsMeeting(rows, {
    minGenuineIdentifiedRate: 0.97,
    maxStrangerAcceptRate: 0.02,
  });

  assert.equal(lowest?.threshold, 0.44);
  assert.deepEqual(
    meeting.map((row) => row.threshold),
    [0.43, 0.44],
  );
  assert.equal(lowestThresholdWithin(rows, 0), rows[4]);
  assert.equal(lowestThresholdWithin([rates(0.5, 1, 0.2)], 0.01), undefined);
});

test('scan reports the best row at each checkpoint', () => {
  // Five queries (one short block of four) against four rows of 2-D vectors.
  const matrix = Float32Array.from([1, 0, 0, 1, -1, 0, 0.6, 0.8]);
  const queries = Float32Array.from([1, 0, 0, 1, -1, 0, 0.6, 0.8, 0, -1]);

  const [none, firstTwo, all] = bestRowsAtCheckpoints(queries, matrix, 2, [0, 2, 4]);

  assert.deepEqual([...none!.rows], [-1, -1, -1, -1, -1]);
  assert.ok(none!.scores.every((score) => score === -Infinity));
  assert.deepEqual([...firstTwo!.rows], [0, 1, 1, 1, 0]);
  assert.deepEqual([...all!.rows], [0, 1, 2, 3, 0]);
  assert.ok(Math.abs(all!.scores[3]! - 1) < 1e-6);
  // Rows 0 and 1 tie at 0 for the last query; the lower row wins.
  assert.equal(all!.scores[4], 0);
});

test('scan rejects descending checkpoints', () => {
  const matrix = new Float32Array(8);

  assert.throws(() => bestRowsAtCheckpoints(new Float32Array(2), matrix, 2, [3, 1]), RangeError);
  assert.throws(() => bestRowsAtCheckpoints(new Float32Array(2), matrix, 2, [5]), RangeError);
});
