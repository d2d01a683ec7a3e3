// The 1:N identification threshold of the embedder, by exact search
// (`npm run bench:identify`). Gallery: the 158 LFW people with at least 10
// photos, enrolled with photos 1-3; genuine probes: their photos 4-8 (790);
// strangers: photo 1 of the 1,522 people with 2 to 9 photos. Prints the
// identification and stranger false-accept rates from 0.30 to 0.60 for three
// enrolment policies, then the rates as synthetic distractor identities grow
// the gallery to 100,000, and a recommended default threshold.
// Options: --seed N (distractor draw), --max-gallery N (default 100000).
import { performance } from 'node:perf_hooks';

import { FACES_MISSING, facesDir } from '@facegate/config';

import {
  describeDistractors,
  distractorSources,
  firstPairQuantiles,
  printRealismTable,
} from './distractor-realism.js';
import type { DistractorSources } from './distractor-realism.js';
import { MIXTURE_NOISE_SCALE, sampleGaussianIdentities, sampleMixtures } from './distractors.js';
import { loadLfwEmbeddings } from './embed-lfw.js';
import { defaultIdentifyThreshold } from './face-index.js';
import {
  ENROLMENT_POLICIES,
  enrolmentTemplates,
  fuseVectors,
  identifyProbes,
  lowestThresholdWithin,
  ratesAtThreshold,
  thresholdSteps,
  thresholdsMeeting,
  withDistractors,
} from './identification.js';
import type { EnrolmentPolicy, Probe, ProbeOutcome, ThresholdRates } from './identification.js';
import { loadLfwCohorts, photoOf } from './lfw-cohorts.js';
import type { LfwCohorts } from './lfw-cohorts.js';
import { markdownTable, percent } from './markdown.js';
import { createRandom } from './random.js';
import { bestRowsAtCheckpoints, packVectors } from './similarity-scan.js';

const ENROLMENT_PHOTOS = [1, 2, 3] as const;
const PROBE_PHOTOS = [4, 5, 6, 7, 8] as const;
const GALLERY_SIZES = [158, 1_000, 10_000, 100_000] as const;
const GROWTH_THRESHOLDS = [0.4, 0.45, 0.5] as const;
/** The stranger false-accept rate the default threshold must keep at the 158-person gallery. */
const TARGET_STRANGER_ACCEPT_RATE = 0.01;
/** Floors of the end-to-end identification test with the same photos. */
const END_TO_END_FLOORS = { minGenuineIdentifiedRate: 0.97, maxStrangerAcceptRate: 0.02 };
const FACES_PER_DISTRACTOR = 3;
/** The IDENTIFY_SCORING that serves each policy, whose default threshold the summary applies. */
const SERVICE_SCORING: Record<EnrolmentPolicy, 'fused' | 'best'> = {
  'one-photo': 'fused',
  'best-of-3': 'best',
  fused: 'fused',
};

const POLICY_LABELS: Record<EnrolmentPolicy, string> = {
  'one-photo': 'one photo',
  'best-of-3': 'best of 3',
  fused: 'fused template',
};

interface Options {
  seed: number;
  maxGallery: number;
}

function parseOptions(argv: readonly string[]): Options {
  const read = (name: string, fallback: number): number => {
    const position = argv.indexOf(name);
    if (position < 0) return fallback;
    const raw = argv[position + 1];
    const parsed = Number(raw);
    if (!Number.isInteger(parsed) || parsed < 1) {
      throw new Error(`${name} must be a positive integer, got '${raw}'`);
    }
    return parsed;
  };
  return { seed: read('--seed', 20_240_601), maxGallery: read('--max-gallery', 100_000) };
}

interface Protocol {
  enrolments: Map<string, Float32Array[]>;
  genuine: Probe[];
  strangers: Probe[];
  /** People whose enrolment photos have no face, so they cannot be enrolled. */
  notEnrolled: string[];
}

function buildProtocol(cohorts: LfwCohorts): Protocol {
  const enrolments = new Map<string, Float32Array[]>();
  const genuine: Probe[] = [];
  const notEnrolled: string[] = [];
  for (const person of cohorts.galleryPeople) {
    const vectors = ENROLMENT_PHOTOS.flatMap((number) => {
      const vector = photoOf(cohorts, person, number).vector;
      return vector ? [vector] : [];
    });
    if (vectors.length === ENROLMENT_PHOTOS.length) enrolments.set(person, vectors);
    else notEnrolled.push(person);
    for (const number of PROBE_PHOTOS) {
      genuine.push({ identity: person, vector: photoOf(cohorts, person, number).vector });
    }
  }
  const strangers = cohorts.strangerPeople.map(
    (person): Probe => ({ identity: undefined, vector: photoOf(cohorts, person, 1).vector }),
  );
  return { enrolments, genuine, strangers, notEnrolled };
}

function printThresholdTable(
  ratesByPolicy: ReadonlyMap<EnrolmentPolicy, ThresholdRates[]>,
  thresholds: readonly number[],
): void {
  const headers = [
    'threshold',
    ...ENROLMENT_POLICIES.flatMap((policy) => [
      `${POLICY_LABELS[policy]}: genuine identified`,
      `${POLICY_LABELS[policy]}: strangers accepted`,
    ]),
  ];
  const rows = thresholds.map((threshold, i) => [
    threshold.toFixed(2),
    ...ENROLMENT_POLICIES.flatMap((policy) => {
      const rates = ratesByPolicy.get(policy)![i]!;
      return [percent(rates.genuineIdentifiedRate), percent(rates.strangerAcceptRate)];
    }),
  ]);
  console.log(markdownTable(headers, rows));
  console.log('');
}

function printPolicySummary(
  outcomesByPolicy: ReadonlyMap<EnrolmentPolicy, ProbeOutcome[]>,
  ratesByPolicy: ReadonlyMap<EnrolmentPolicy, ThresholdRates[]>,
  modelId: string,
): void {
  const rows = ENROLMENT_POLICIES.map((policy) => {
    const outcomes = outcomesByPolicy.get(policy)!;
    const rates = ratesByPolicy.get(policy)!;
    const genuine = outcomes.filter((outcome) => outcome.expectedIdentity !== undefined);
    const rankOne =
      genuine.filter((outcome) => outcome.bestIdentity === outcome.expectedIdentity).length /
      genuine.length;
    const atTarget = lowestThresholdWithin(rates, TARGET_STRANGER_ACCEPT_RATE);
    const meeting = thresholdsMeeting(rates, END_TO_END_FLOORS);
    const currentDefault = defaultIdentifyThreshold(modelId, SERVICE_SCORING[policy]);
    const atDefault = ratesAtThreshold(outcomes, currentDefault);
    return [
      POLICY_LABELS[policy],
      percent(rankOne),
      atTarget
        ? `${atTarget.threshold.toFixed(2)} (genuine ${percent(atTarget.genuineIdentifiedRate)}, strangers ${percent(atTarget.strangerAcceptRate)})`
        : 'none',
      meeting.length > 0
        ? `${meeting[0]!.threshold.toFixed(2)} to ${meeting[meeting.length - 1]!.threshold.toFixed(2)}`
        : 'none',
      `${currentDefault.toFixed(2)}: genuine ${percent(atDefault.genuineIdentifiedRate)}, wrong person ${percent(atDefault.genuineMisidentifiedRate)}, strangers ${percent(atDefault.strangerAcceptRate)}`,
    ];
  });
  console.log(
    markdownTable(
      [
        'policy',
        'rank-1 (no threshold)',
        `lowest threshold with strangers <= ${percent(TARGET_STRANGER_ACCEPT_RATE, 0)}`,
        `thresholds meeting genuine >= ${percent(END_TO_END_FLOORS.minGenuineIdentifiedRate, 0)} and strangers <= ${percent(END_TO_END_FLOORS.maxStrangerAcceptRate, 0)}`,
        'at the service default for this scoring',
      ],
      rows,
    ),
  );
  console.log('');
}

/** Builds the distractor rows each policy enrols, identity-major, and how many rows one identity takes. */
function distractorGalleries(
  identities: Float32Array,
  identityCount: number,
  dim: number,
): Record<EnrolmentPolicy, { matrix: Float32Array; rowsPerIdentity: number }> {
  const firstFaces = new Float32Array(identityCount * dim);
  const fused = new Float32Array(identityCount * dim);
  const faceSize = FACES_PER_DISTRACTOR * dim;
  for (let identity = 0; identity < identityCount; identity += 1) {
    const faces = Array.from({ length: FACES_PER_DISTRACTOR }, (_, k) =>
      identities.subarray(identity * faceSize + k * dim, identity * faceSize + (k + 1) * dim),
    );
    firstFaces.set(faces[0]!, identity * dim);
    fused.set(fuseVectors(faces), identity * dim);
  }
  return {
    'one-photo': { matrix: firstFaces, rowsPerIdentity: 1 },
    'best-of-3': { matrix: identities, rowsPerIdentity: FACES_PER_DISTRACTOR },
    fused: { matrix: fused, rowsPerIdentity: 1 },
  };
}

/**
 * Returns, for each gallery size, each probe's best similarity to the distractor
 * identities that size adds (-Infinity for probes without a face).
 */
function distractorScoresBySize(
  probes: readonly Probe[],
  matrix: Float32Array,
  rowsPerIdentity: number,
  sizes: readonly number[],
  realIdentityCount: number,
  dim: number,
): Float64Array[] {
  const withFace = probes.flatMap((probe, i) => (probe.vector ? [i] : []));
  const queries = packVectors(
    withFace.map((i) => probes[i]!.vector!),
    dim,
  );
  const checkpoints = sizes.map((size) => Math.max(0, size - realIdentityCount) * rowsPerIdentity);
  const best = bestRowsAtCheckpoints(queries, matrix, dim, checkpoints);
  return best.map(({ scores }) => {
    const byProbe = new Float64Array(probes.length).fill(-Infinity);
    withFace.forEach((probeIndex, position) => {
      byProbe[probeIndex] = scores[position]!;
    });
    return byProbe;
  });
}

interface GrowthRow {
  kind: string;
  size: number;
  policy: EnrolmentPolicy;
  rates: ThresholdRates[];
}

/** Distractor scores by gallery size, per distractor matrix: policies that enrol the same rows share one scan. */
type ScanCache = Map<Float32Array, Float64Array[]>;

function measureGrowth(
  kind: string,
  galleries: Partial<Record<EnrolmentPolicy, { matrix: Float32Array; rowsPerIdentity: number }>>,
  probes: readonly Probe[],
  outcomesByPolicy: ReadonlyMap<EnrolmentPolicy, ProbeOutcome[]>,
  sizes: readonly number[],
  realIdentityCount: number,
  dim: number,
  cache: ScanCache = new Map(),
): GrowthRow[] {
  return ENROLMENT_POLICIES.flatMap((policy) => {
    const gallery = galleries[policy];
    if (!gallery) return [];

    let scoresBySize = cache.get(gallery.matrix);
    if (!scoresBySize) {
      const started = performance.now();
      scoresBySize = distractorScoresBySize(
        probes,
        gallery.matrix,
        gallery.rowsPerIdentity,
        sizes,
        realIdentityCount,
        dim,
      );
      cache.set(gallery.matrix, scoresBySize);
      process.stderr.write(
        `${kind} ${policy}: scanned ${gallery.matrix.length / dim} distractor rows in ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
      );
    }

    return sizes.map((size, i): GrowthRow => {
      const outcomes = withDistractors(outcomesByPolicy.get(policy)!, scoresBySize[i]!);
      return {
        kind,
        size,
        policy,
        rates: GROWTH_THRESHOLDS.map((threshold) => ratesAtThreshold(outcomes, threshold)),
      };
    });
  });
}

function printGrowthTable(rows: readonly GrowthRow[]): void {
  const headers = [
    'distractors',
    'gallery identities',
    'policy',
    ...GROWTH_THRESHOLDS.map((threshold) => `strangers accepted @${threshold.toFixed(2)}`),
    ...GROWTH_THRESHOLDS.map((threshold) => `genuine identified @${threshold.toFixed(2)}`),
    ...GROWTH_THRESHOLDS.map((threshold) => `genuine wrong person @${threshold.toFixed(2)}`),
  ];
  console.log(
    markdownTable(
      headers,
      rows.map((row) => [
        row.kind,
        String(row.size),
        POLICY_LABELS[row.policy],
        ...row.rates.map((rates) => percent(rates.strangerAcceptRate)),
        ...row.rates.map((rates) => percent(rates.genuineIdentifiedRate)),
        ...row.rates.map((rates) => percent(rates.genuineMisidentifiedRate)),
      ]),
    ),
  );
  console.log('');
}

function runGrowth(
  sources: DistractorSources,
  protocol: Protocol,
  outcomesByPolicy: ReadonlyMap<EnrolmentPolicy, ProbeOutcome[]>,
  options: Options,
  dim: number,
): GrowthRow[] {
  const realIdentityCount = protocol.enrolments.size;
  const sizes = GALLERY_SIZES.filter((size) => size <= options.maxGallery);
  const distractorCount = Math.max(0, sizes[sizes.length - 1]! - realIdentityCount);
  const random = createRandom(options.seed);
  const probes = [...protocol.genuine, ...protocol.strangers];

  const identities = sampleGaussianIdentities(
    sources.model,
    distractorCount,
    FACES_PER_DISTRACTOR,
    random,
  );
  const mixtures = sampleMixtures(
    sources.singlePhotos,
    distractorCount,
    MIXTURE_NOISE_SCALE,
    random,
  );

  const firstFaces = distractorGalleries(identities, distractorCount, dim)['one-photo'].matrix;
  printRealismTable(
    packVectors(
      protocol.genuine.flatMap((probe) => (probe.vector ? [probe.vector] : [])),
      dim,
    ),
    dim,
    sources.realStrangers,
    [
      ['gaussian identities, face 1', firstFaces],
      ['mixture', mixtures],
    ],
  );
  const synthetic = firstPairQuantiles(
    Array.from({ length: Math.min(distractorCount, 5_000) }, (_, identity) => [
      identities.subarray(
        identity * FACES_PER_DISTRACTOR * dim,
        (identity * FACES_PER_DISTRACTOR + 1) * dim,
      ),
      identities.subarray(
        (identity * FACES_PER_DISTRACTOR + 1) * dim,
        (identity * FACES_PER_DISTRACTOR + 2) * dim,
      ),
    ]),
  );
  const real = firstPairQuantiles(sources.strangerGroups);
  console.log(
    `Same-person similarity (faces 1 and 2), 10/50/90th percentiles: gaussian identities ` +
      `${synthetic.map((value) => value.toFixed(3)).join(' / ')}, real strangers (photos 1 and 2) ` +
      `${real.map((value) => value.toFixed(3)).join(' / ')}.`,
  );
  console.log('');

  return [
    ...measureGrowth(
      'gaussian',
      distractorGalleries(identities, distractorCount, dim),
      probes,
      outcomesByPolicy,
      sizes,
      realIdentityCount,
      dim,
    ),
    // A mixture has one face, so it stands for a one-template identity: the one-photo and fused policies.
    ...measureGrowth(
      'mixture',
      {
        'one-photo': { matrix: mixtures, rowsPerIdentity: 1 },
        fused: { matrix: mixtures, rowsPerIdentity: 1 },
      },
      probes,
      outcomesByPolicy,
      sizes,
      realIdentityCount,
      dim,
    ),
  ];
}

async function main(): Promise<void> {
  const dir = facesDir();
  if (!dir) {
    console.error(FACES_MISSING);
    process.exit(1);
  }
  const options = parseOptions(process.argv);
  const runStarted = performance.now();

  const loaded = await loadLfwEmbeddings({
    facesDir: dir,
    onProgress: (done, total) => {
      if (done % 1000 === 0) process.stderr.write(`embedded ${done}/${total} photos\n`);
    },
  });
  const { dim, modelId } = loaded.set;
  const cohorts = await loadLfwCohorts(dir, loaded.set);
  const protocol = buildProtocol(cohorts);
  const probes = [...protocol.genuine, ...protocol.strangers];
  const thresholds = thresholdSteps(0.3, 0.6, 0.01);

  const outcomesByPolicy = new Map<EnrolmentPolicy, ProbeOutcome[]>();
  const ratesByPolicy = new Map<EnrolmentPolicy, ThresholdRates[]>();
  for (const policy of ENROLMENT_POLICIES) {
    const outcomes = identifyProbes(enrolmentTemplates(policy, protocol.enrolments), probes, dim);
    outcomesByPolicy.set(policy, outcomes);
    ratesByPolicy.set(
      policy,
      thresholds.map((threshold) => ratesAtThreshold(outcomes, threshold)),
    );
  }

  const missing = (list: readonly Probe[]): number => list.filter((probe) => !probe.vector).length;
  console.log(
    `model ${modelId} (${dim}-D); LFW embeddings ${loaded.source === 'cache' ? 'read from' : 'computed into'} ` +
      `${loaded.dataPath} in ${loaded.seconds.toFixed(1)} s; exact search`,
  );
  console.log(
    `gallery: ${protocol.enrolments.size} people enrolled with photos ${ENROLMENT_PHOTOS.join(', ')}` +
      `${protocol.notEnrolled.length > 0 ? ` (not enrolled, no face: ${protocol.notEnrolled.join(', ')})` : ''}; ` +
      `${protocol.genuine.length} genuine probes (photos ${PROBE_PHOTOS.join(', ')}, ${missing(protocol.genuine)} without a face); ` +
      `${protocol.strangers.length} strangers (photo 1, ${missing(protocol.strangers)} without a face)`,
  );
  console.log(
    'genuine identified: best identity right and similarity >= threshold, over all genuine probes; ' +
      'strangers accepted: best similarity >= threshold, over all strangers',
  );
  console.log('');
  printThresholdTable(ratesByPolicy, thresholds);
  printPolicySummary(outcomesByPolicy, ratesByPolicy, modelId);

  const sources = distractorSources(cohorts, dim);
  console.log(describeDistractors(sources, options.seed));
  console.log('');
  const growth = runGrowth(sources, protocol, outcomesByPolicy, options, dim);
  console.log(
    `Gallery growth: the ${protocol.enrolments.size} real people plus synthetic distractor identities ` +
      `(gaussian: ${FACES_PER_DISTRACTOR} faces each, enrolled by the same policy; mixture: one template each).`,
  );
  console.log('');
  printGrowthTable(growth);

  const production = ratesByPolicy.get('fused')!;
  const recommended = lowestThresholdWithin(production, TARGET_STRANGER_ACCEPT_RATE);
  if (recommended) {
    console.log(
      `fused template (how the service scores a visitor with several faces by default): lowest threshold with strangers <= ` +
        `${percent(TARGET_STRANGER_ACCEPT_RATE, 0)} is ${recommended.threshold.toFixed(2)} ` +
        `(genuine identified ${percent(recommended.genuineIdentifiedRate)}, strangers ${percent(recommended.strangerAcceptRate)}, ` +
        `${recommended.strangerCount} strangers, ${recommended.genuineCount} genuine probes)`,
    );
  }
  console.log(`\nrun time ${((performance.now() - runStarted) / 1000).toFixed(0)} s`);
}

await main();
