// HNSW recall and speed of the face index on a gallery of real and synthetic
// faces (`npm run bench:ann`). Gallery: photo 1 of each of the 158 LFW people
// with at least 10 photos, plus --distractors synthetic faces (default 100,000)
// shaped like real embeddings. Probes: the other photos of the 158 people.
// For each M and efConstruction it prints the build time and index file size.
// For each ef it prints the recall@1 against exact search, the right-identity
// rate and ms per query on one thread. Last comes the exact-search time per
// gallery size.
// Options: --distractors N, --kind gaussian|mixture (default gaussian),
// --builds M:efConstruction,... (default 16:200,16:400,32:200,32:400),
// --budget-seconds S (default 540: settings that would overrun it are skipped
// and reported), --seed N.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { FACES_MISSING, facesDir } from '@facegate/config';

import { describeDistractors, distractorSources, printRealismTable } from './distractor-realism.js';
import { MIXTURE_NOISE_SCALE, sampleGaussianIdentities, sampleMixtures } from './distractors.js';
import type { DistractorKind } from './distractors.js';
import { loadLfwEmbeddings } from './embed-lfw.js';
import { FaceIndex, exactTopK } from './face-index.js';
import { normalise } from './identification.js';
import { loadLfwCohorts, photoOf } from './lfw-cohorts.js';
import type { LfwCohorts } from './lfw-cohorts.js';
import { markdownTable, percent } from './markdown.js';
import { createRandom } from './random.js';
import type { Random } from './random.js';
import { bestRows, packVectors } from './similarity-scan.js';
import { quantile } from './similarity-stats.js';

const DEFAULT_BUILDS = '16:200,16:400,32:200,32:400';
const SEARCH_EFS = [50, 100, 200, 400, 800] as const;
const EXACT_SIZES = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000] as const;
/** FaceIndex.search with k = 1 requests 4 faces from the exact scan (its oversampling factor). */
const EXACT_FACES_PER_QUERY = 4;
const EXACT_QUERIES = 200;
const WARMUP_QUERIES = 200;
/** Recall@1 a configuration needs before its speed counts in the recommendation. */
const MIN_RECOMMENDED_RECALL = 0.995;
const EXACT_BUDGET_MS = 1;
/** Seconds kept free at the end of the run for the exact-search timings. */
const EXACT_TIMING_RESERVE_SECONDS = 20;
/** A build is skipped unless this multiple of the slowest setting so far still fits the budget. */
const BUILD_ESTIMATE_MARGIN = 1.25;

interface Options {
  distractorCount: number;
  kind: DistractorKind;
  builds: Array<{ M: number; efConstruction: number }>;
  budgetSeconds: number;
  seed: number;
}

interface Workload {
  dim: number;
  modelId: string;
  /** Gallery faces: the first galleryPeople.length rows are the enrolled people, the rest distractors. */
  matrix: Float32Array;
  rowCount: number;
  galleryPeople: string[];
  probes: Float32Array;
  probePeople: string[];
  /** Row of the exact best match of each probe. */
  exactBestRow: Int32Array;
}

interface SearchRow {
  ef: number;
  recallAt1: number;
  rightIdentityRate: number;
  msPerQuery: number;
}

interface BuildResult {
  M: number;
  efConstruction: number;
  buildSeconds: number;
  searchSeconds: number;
  indexBytes: number;
  searches: SearchRow[];
}

interface SkippedBuild {
  M: number;
  efConstruction: number;
  reason: string;
}

function parseOptions(argv: readonly string[]): Options {
  const value = (name: string): string | undefined => {
    const position = argv.indexOf(name);
    return position > 0 ? argv[position + 1] : undefined;
  };
  const positiveInteger = (name: string, fallback: number): number => {
    const raw = value(name);
    if (raw === undefined) return fallback;
    const parsed = Number(raw);
    if (!Number.isInteger(parsed) || parsed < 1) {
      throw new Error(`${name} must be a positive integer, got '${raw}'`);
    }
    return parsed;
  };
  const kind = value('--kind') ?? 'gaussian';
  if (kind !== 'gaussian' && kind !== 'mixture') {
    throw new Error(`--kind must be gaussian or mixture, got '${kind}'`);
  }
  const builds = (value('--builds') ?? DEFAULT_BUILDS).split(',').map((setting) => {
    const [M, efConstruction] = setting.split(':').map(Number);
    if (
      !Number.isInteger(M) ||
      !Number.isInteger(efConstruction) ||
      M! < 2 ||
      efConstruction! < 1
    ) {
      throw new Error(`--builds takes M:efConstruction pairs such as 16:200, got '${setting}'`);
    }
    return { M: M!, efConstruction: efConstruction! };
  });
  return {
    distractorCount: positiveInteger('--distractors', 100_000),
    kind,
    builds,
    budgetSeconds: positiveInteger('--budget-seconds', 540),
    seed: positiveInteger('--seed', 20_240_601),
  };
}

function uniformUnitVectors(count: number, dim: number, random: Random): Float32Array {
  const packed = new Float32Array(count * dim);
  const draw = new Float64Array(dim);
  for (let n = 0; n < count; n += 1) {
    for (let i = 0; i < dim; i += 1) draw[i] = random.normal();
    packed.set(normalise(draw), n * dim);
  }
  return packed;
}

function buildWorkload(
  cohorts: LfwCohorts,
  dim: number,
  modelId: string,
  distractors: Float32Array,
): Omit<Workload, 'exactBestRow'> {
  const galleryPeople: string[] = [];
  const galleryVectors: Float32Array[] = [];
  const probeVectors: Float32Array[] = [];
  const probePeople: string[] = [];
  for (const person of cohorts.galleryPeople) {
    const enrolment = photoOf(cohorts, person, 1).vector;
    if (!enrolment) continue;
    galleryPeople.push(person);
    galleryVectors.push(enrolment);
    for (const photo of cohorts.photosByPerson.get(person)!) {
      if (photo.photoNumber === 1 || !photo.vector) continue;
      probeVectors.push(photo.vector);
      probePeople.push(person);
    }
  }

  const galleryMatrix = packVectors(galleryVectors, dim);
  const matrix = new Float32Array(galleryMatrix.length + distractors.length);
  matrix.set(galleryMatrix);
  matrix.set(distractors, galleryMatrix.length);
  return {
    dim,
    modelId,
    matrix,
    rowCount: matrix.length / dim,
    galleryPeople,
    probes: packVectors(probeVectors, dim),
    probePeople,
  };
}

function identityOfRow(workload: Workload, row: number): string {
  return workload.galleryPeople[row] ?? `distractor-${row}`;
}

/** Checks the blocked scan against the service's exactTopK on a few probes: both must agree. */
function checkGroundTruth(workload: Workload, probeCount: number): void {
  const { dim } = workload;
  for (let p = 0; p < probeCount; p += 1) {
    const query = workload.probes.subarray(p * dim, (p + 1) * dim);
    const { rows } = exactTopK(workload.matrix, workload.rowCount, dim, query, 1);
    if (rows[0] !== workload.exactBestRow[p]) {
      throw new Error(
        `exact search disagrees on probe ${p}: exactTopK row ${rows[0]}, scan row ${workload.exactBestRow[p]}`,
      );
    }
  }
}

async function buildIndex(
  workload: Workload,
  M: number,
  efConstruction: number,
  deadlineMs: number,
): Promise<{ index: FaceIndex; buildSeconds: number } | SkippedBuild> {
  const { dim } = workload;
  const index = new FaceIndex({
    modelId: workload.modelId,
    dim,
    M,
    efConstruction,
    // Force the HNSW path at every size: this benchmark measures the graph.
    exactSearchMaxFaces: 0,
    initialCapacity: workload.rowCount,
  });
  const started = performance.now();
  for (let row = 0; row < workload.rowCount; row += 1) {
    index.add(
      row,
      identityOfRow(workload, row),
      workload.matrix.subarray(row * dim, (row + 1) * dim),
    );
    if (row % 5_000 === 4_999 && performance.now() > deadlineMs) {
      const seconds = (performance.now() - started) / 1000;
      return {
        M,
        efConstruction,
        reason: `build abandoned after ${seconds.toFixed(0)} s at ${row + 1} of ${workload.rowCount} faces, at the end of the time budget`,
      };
    }
  }
  // Yield once so a build that just fits does not starve pending I/O before the searches.
  await new Promise((resolve) => setImmediate(resolve));
  return { index, buildSeconds: (performance.now() - started) / 1000 };
}

async function indexFileBytes(index: FaceIndex): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'facegate-ann-recall-'));
  try {
    return (await index.save(dir)).indexBytes;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function measureSearches(index: FaceIndex, workload: Workload): SearchRow[] {
  const { dim } = workload;
  const probeCount = workload.probePeople.length;
  const probe = (p: number): Float32Array => workload.probes.subarray(p * dim, (p + 1) * dim);

  return SEARCH_EFS.map((ef): SearchRow => {
    for (let p = 0; p < Math.min(WARMUP_QUERIES, probeCount); p += 1)
      index.search(probe(p), { k: 1, ef });

    let recalled = 0;
    let rightIdentity = 0;
    const started = performance.now();
    for (let p = 0; p < probeCount; p += 1) {
      const best = index.search(probe(p), { k: 1, ef })[0];
      if (best?.faceId === workload.exactBestRow[p]) recalled += 1;
      if (best?.visitorId === workload.probePeople[p]) rightIdentity += 1;
    }
    const msPerQuery = (performance.now() - started) / probeCount;
    return {
      ef,
      recallAt1: recalled / probeCount,
      rightIdentityRate: rightIdentity / probeCount,
      msPerQuery,
    };
  });
}

function measureExactSearch(
  workload: Workload,
): Array<{ size: number; meanMs: number; p99Ms: number }> {
  const { dim } = workload;
  const queryCount = Math.min(EXACT_QUERIES, workload.probePeople.length);
  return EXACT_SIZES.filter((size) => size <= workload.rowCount).map((size) => {
    const samples: number[] = [];
    for (let p = 0; p < queryCount; p += 1) {
      const query = workload.probes.subarray(p * dim, (p + 1) * dim);
      const started = performance.now();
      exactTopK(workload.matrix, size, dim, query, EXACT_FACES_PER_QUERY);
      samples.push(performance.now() - started);
    }
    // The first queries also pay for compilation; drop them from the mean.
    const measured = samples.slice(Math.min(10, samples.length - 1));
    const meanMs = measured.reduce((sum, value) => sum + value, 0) / measured.length;
    return {
      size,
      meanMs,
      p99Ms: quantile(
        [...measured].sort((a, b) => a - b),
        0.99,
      ),
    };
  });
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

  // Distractor statistics come from people who are neither enrolled nor probes.
  const sources = distractorSources(cohorts, dim);
  const random = createRandom(options.seed);
  const generated = {
    gaussian: sampleGaussianIdentities(sources.model, options.distractorCount, 1, random),
    mixture: sampleMixtures(
      sources.singlePhotos,
      options.distractorCount,
      MIXTURE_NOISE_SCALE,
      random,
    ),
  };
  const distractors = generated[options.kind];

  const partial = buildWorkload(cohorts, dim, modelId, distractors);
  const exact = bestRows(partial.probes, partial.matrix, dim);
  const workload: Workload = { ...partial, exactBestRow: exact.rows };
  checkGroundTruth(workload, 50);
  const exactRightIdentity =
    workload.probePeople.filter((person, p) => identityOfRow(workload, exact.rows[p]!) === person)
      .length / workload.probePeople.length;

  console.log(
    `model ${modelId} (${dim}-D); LFW embeddings ${loaded.source === 'cache' ? 'read from' : 'computed into'} ` +
      `${loaded.dataPath} in ${loaded.seconds.toFixed(1)} s`,
  );
  console.log(
    `gallery: ${workload.galleryPeople.length} people (photo 1) + ${options.distractorCount} ${options.kind} distractors ` +
      `= ${workload.rowCount} faces; ${workload.probePeople.length} genuine probes (their other photos)`,
  );
  console.log(describeDistractors(sources, options.seed));
  console.log('');

  const realStrangerCount = sources.realStrangers.length / dim;
  printRealismTable(workload.probes, dim, sources.realStrangers, [
    [
      'real single-photo people (fit set)',
      packVectors(sources.singlePhotos.slice(0, realStrangerCount), dim),
    ],
    ['gaussian', generated.gaussian],
    ['mixture', generated.mixture],
    ['uniform on the sphere', uniformUnitVectors(realStrangerCount, dim, random)],
  ]);

  const results: BuildResult[] = [];
  const skipped: SkippedBuild[] = [];
  const deadlineMs = runStarted + (options.budgetSeconds - EXACT_TIMING_RESERVE_SECONDS) * 1000;
  for (const { M, efConstruction } of options.builds) {
    const slowestSeconds = Math.max(
      0,
      ...results.map((result) => result.buildSeconds + result.searchSeconds),
    );
    const remainingSeconds = (deadlineMs - performance.now()) / 1000;
    if (slowestSeconds * BUILD_ESTIMATE_MARGIN > remainingSeconds) {
      skipped.push({
        M,
        efConstruction,
        reason:
          `not run: ${remainingSeconds.toFixed(0)} s of the ${options.budgetSeconds} s budget were left, ` +
          `and the slowest setting so far took ${slowestSeconds.toFixed(0)} s to build and search (--budget-seconds raises it)`,
      });
      continue;
    }

    process.stderr.write(`building M=${M} efConstruction=${efConstruction}\n`);
    const built = await buildIndex(workload, M, efConstruction, deadlineMs);
    if (!('index' in built)) {
      skipped.push(built);
      continue;
    }
    const indexBytes = await indexFileBytes(built.index);
    const searchStarted = performance.now();
    const searches = measureSearches(built.index, workload);
    results.push({
      M,
      efConstruction,
      buildSeconds: built.buildSeconds,
      searchSeconds: (performance.now() - searchStarted) / 1000,
      indexBytes,
      searches,
    });
  }

  console.log(
    `Exact search: right identity for ${percent(exactRightIdentity)} of the probes (the ceiling for HNSW).`,
  );
  console.log('');
  console.log(
    markdownTable(
      [
        'M',
        'efConstruction',
        'build s',
        'index file MB',
        'ef',
        'recall@1',
        'right identity',
        'ms/query',
      ],
      results.flatMap((result) =>
        result.searches.map((search) => [
          String(result.M),
          String(result.efConstruction),
          result.buildSeconds.toFixed(1),
          (result.indexBytes / 1e6).toFixed(1),
          String(search.ef),
          percent(search.recallAt1),
          percent(search.rightIdentityRate),
          search.msPerQuery.toFixed(3),
        ]),
      ),
    ),
  );
  for (const skip of skipped)
    console.log(`\nM=${skip.M} efConstruction=${skip.efConstruction} skipped: ${skip.reason}`);
  console.log('');

  const exactTimes = measureExactSearch(workload);
  console.log(
    `Exact search (exactTopK, ${EXACT_FACES_PER_QUERY} faces per query, as FaceIndex.search with k=1 requests), ${EXACT_QUERIES} queries per size:`,
  );
  console.log('');
  console.log(
    markdownTable(
      ['faces', 'mean ms/query', 'p99 ms/query', 'ns per face'],
      exactTimes.map((time) => [
        String(time.size),
        time.meanMs.toFixed(3),
        time.p99Ms.toFixed(3),
        ((time.meanMs * 1e6) / time.size).toFixed(1),
      ]),
    ),
  );
  console.log('');

  printRecommendation(results, exactTimes);
  console.log(`\nrun time ${((performance.now() - runStarted) / 1000).toFixed(0)} s`);
}

function printRecommendation(
  results: readonly BuildResult[],
  exactTimes: ReadonlyArray<{ size: number; meanMs: number }>,
): void {
  const candidates = results
    .flatMap((result) => result.searches.map((search) => ({ ...result, ...search })))
    .filter((candidate) => candidate.recallAt1 >= MIN_RECOMMENDED_RECALL)
    .sort((a, b) => a.msPerQuery - b.msPerQuery);
  const fastest = candidates[0];
  if (fastest) {
    console.log(
      `fastest setting with recall@1 >= ${percent(MIN_RECOMMENDED_RECALL, 1)}: M=${fastest.M}, ` +
        `efConstruction=${fastest.efConstruction}, ef=${fastest.ef} ` +
        `(recall@1 ${percent(fastest.recallAt1)}, ${fastest.msPerQuery.toFixed(3)} ms/query, ` +
        `build ${fastest.buildSeconds.toFixed(1)} s, index file ${(fastest.indexBytes / 1e6).toFixed(1)} MB)`,
    );
  } else {
    console.log(`no measured setting reaches recall@1 >= ${percent(MIN_RECOMMENDED_RECALL, 1)}`);
  }

  const withinBudget = exactTimes.filter((time) => time.meanMs < EXACT_BUDGET_MS);
  const largest = withinBudget[withinBudget.length - 1];
  // The scan costs about the same per face at every size, so the median rate extrapolates.
  // The median ignores sizes slowed by other load or by cache misses on large matrices.
  const nsPerFace = exactTimes.map((time) => (time.meanMs * 1e6) / time.size).sort((a, b) => a - b);
  const medianNsPerFace = quantile(nsPerFace, 0.5);
  const facesPerBudget = Math.floor((EXACT_BUDGET_MS * 1e6) / medianNsPerFace);
  console.log(
    `exact search stays under ${EXACT_BUDGET_MS} ms/query up to ${largest ? largest.size : 'none'} of the measured sizes; ` +
      `at the median ${medianNsPerFace.toFixed(0)} ns per face, ${EXACT_BUDGET_MS} ms covers about ${facesPerBudget} faces`,
  );
}

await main();
