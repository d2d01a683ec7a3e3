import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, test } from 'node:test';

import type { MatchJob } from '@facegate/contracts';
import { defaultIdentifyThreshold, encodeVector } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { maxChangeSeq } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import { FaceIndex } from '@facegate/index';

import type { MatchIndex } from '../src/index.js';
import { IndexService, embedderModel, identify } from '../src/index.js';
import type { EnrolledVisitor } from './helpers.js';
import {
  MODEL_ID,
  createRandom,
  dropTestDatabase,
  enrolGallery,
  enrolVisitor,
  makeTempDir,
  noisyCopy,
  openTestDatabase,
  randomUnitVector,
  silentLogger,
} from './helpers.js';

const random = createRandom(101);
let db: Database;
let indexDir: string;
let service: IndexService;
let gallery: EnrolledVisitor[];

before(async () => {
  db = await openTestDatabase();
  indexDir = await makeTempDir();
  gallery = await enrolGallery(db, random, 6, 3);
  service = new IndexService({
    db,
    model: embedderModel('mobilefacenet'),
    indexDir,
    hnsw: { M: 16, efConstruction: 100, ef: 50, initialCapacity: 64, exactSearchMaxFaces: 20_000 },
    persistDelayMs: 1000,
    feedPollIntervalMs: 600_000,
    logger: silentLogger,
  });
  await service.start();
});

after(async () => {
  await service.stop();
  await dropTestDatabase(db);
  await rm(indexDir, { recursive: true, force: true });
});

function matchJob(vectors: Float32Array[], params: Partial<MatchJob['params']> = {}): MatchJob {
  return {
    kind: 'identify',
    correlationId: randomUUID(),
    replyTo: 'unused',
    requestId: randomUUID(),
    modelId: MODEL_ID,
    image: { width: 640, height: 480 },
    faces: vectors.map((vector, position) => ({
      box: { x: 10 * position, y: 20, width: 100, height: 120 },
      score: 0.9,
      landmarks: [
        [30, 40],
        [70, 40],
      ],
      embedding: encodeVector(vector),
    })),
    params: { topK: 3, minSeq: 0, ...params },
    timings: { decodeMs: 4, detectMs: 12 },
  };
}

function isError(code: string) {
  return (error: unknown) => {
    assert.ok(error instanceof FaceGateError, String(error));
    assert.equal(error.code, code);
    return true;
  };
}

test('identify names the enrolled visitor', async () => {
  const visitor = gallery[2]!;
  const job = matchJob([noisyCopy(visitor.centre, random)]);

  const result = await identify(job, { index: service, db }, silentLogger);

  assert.equal(result.modelId, MODEL_ID);
  assert.equal(result.threshold, defaultIdentifyThreshold('mobilefacenet_foamliu_128d', 'fused'));
  assert.deepEqual(result.image, job.image);
  assert.equal(result.faces.length, 1);
  const face = result.faces[0]!;
  assert.deepEqual(face.box, job.faces[0]!.box);
  assert.equal(face.score, 0.9);
  assert.deepEqual(face.landmarks, job.faces[0]!.landmarks);
  assert.equal(face.match?.visitorId, visitor.id);
  assert.equal(face.match?.name, visitor.name);
  assert.equal(face.match?.externalId, visitor.externalId);
  assert.ok(face.match.similarity >= result.threshold, `similarity ${face.match.similarity}`);
  assert.deepEqual(face.candidates[0], face.match);
});

test('candidates are distinct visitors, best first', async () => {
  const job = matchJob([noisyCopy(gallery[0]!.centre, random)], { topK: 5 });

  const result = await identify(job, { index: service, db }, silentLogger);

  const candidates = result.faces[0]!.candidates;
  assert.equal(candidates.length, 5);
  assert.equal(new Set(candidates.map((candidate) => candidate.visitorId)).size, 5);
  const similarities = candidates.map((candidate) => candidate.similarity);
  assert.deepEqual(
    similarities,
    [...similarities].sort((a, b) => b - a),
  );
});

test('stranger gets no match', async () => {
  const job = matchJob([randomUnitVector(random)]);

  const result = await identify(job, { index: service, db }, silentLogger);

  assert.equal(result.faces[0]!.match, null);
  assert.equal(result.faces[0]!.candidates.length, 3);
});

test('each face of a job is identified', async () => {
  const job = matchJob([
    noisyCopy(gallery[4]!.centre, random),
    randomUnitVector(random),
    noisyCopy(gallery[1]!.centre, random),
  ]);

  const result = await identify(job, { index: service, db }, silentLogger);

  assert.deepEqual(
    result.faces.map((face) => face.match?.visitorId ?? null),
    [gallery[4]!.id, null, gallery[1]!.id],
  );
});

test('job without faces gets an empty answer', async () => {
  const result = await identify(matchJob([]), { index: service, db }, silentLogger);

  assert.deepEqual(result.faces, []);
});

test('job threshold overrides the default', async () => {
  const probe = noisyCopy(gallery[3]!.centre, random);
  const strict = matchJob([probe], { threshold: 0.999 });
  const lenient = matchJob([randomUnitVector(random)], { threshold: -1 });

  const strictResult = await identify(strict, { index: service, db }, silentLogger);
  const lenientResult = await identify(lenient, { index: service, db }, silentLogger);

  assert.equal(strictResult.threshold, 0.999);
  assert.equal(strictResult.faces[0]!.match, null);
  assert.equal(strictResult.faces[0]!.candidates[0]?.visitorId, gallery[3]!.id);
  assert.notEqual(lenientResult.faces[0]!.match, null);
});

test('configured threshold replaces the model default', async () => {
  const job = matchJob([noisyCopy(gallery[3]!.centre, random)]);

  const result = await identify(
    job,
    { index: service, db, identifyThreshold: 0.9999 },
    silentLogger,
  );

  assert.equal(result.threshold, 0.9999);
  assert.equal(result.faces[0]!.match, null);
});

test('timings add matchMs to the job timings', async () => {
  const job = matchJob([noisyCopy(gallery[0]!.centre, random)]);

  const result = await identify(job, { index: service, db }, silentLogger);

  assert.equal(result.timings.decodeMs, 4);
  assert.equal(result.timings.detectMs, 12);
  assert.equal(typeof result.timings.matchMs, 'number');
  assert.ok(result.timings.matchMs! >= 0);
});

test('job of another model is MODEL_MISMATCH', async () => {
  const job = { ...matchJob([gallery[0]!.centre]), modelId: 'sface_2021dec' };

  await assert.rejects(
    identify(job, { index: service, db }, silentLogger),
    isError('MODEL_MISMATCH'),
  );
});

test('malformed jobs are INVALID_REQUEST', async () => {
  const valid = matchJob([gallery[0]!.centre]);
  const cases: Array<[string, MatchJob]> = [
    ['kind', { ...valid, kind: 'verify' as 'identify' }],
    ['topK zero', { ...valid, params: { ...valid.params, topK: 0 } }],
    ['topK fraction', { ...valid, params: { ...valid.params, topK: 1.5 } }],
    ['threshold above 1', { ...valid, params: { ...valid.params, threshold: 2 } }],
    ['threshold NaN', { ...valid, params: { ...valid.params, threshold: Number.NaN } }],
    ['minSeq negative', { ...valid, params: { ...valid.params, minSeq: -1 } }],
    ['minSeq missing', { ...valid, params: { topK: 3 } as MatchJob['params'] }],
    ['faces not an array', { ...valid, faces: 'none' as unknown as MatchJob['faces'] }],
    ['embedding of 64 values', matchJob([new Float32Array(64).fill(0.1)])],
    ['embedding of 3 bytes', { ...valid, faces: [{ ...valid.faces[0]!, embedding: 'AAAA' }] }],
    ['embedding of zeros', matchJob([new Float32Array(128)])],
    [
      'embedding missing',
      { ...valid, faces: [{ ...valid.faces[0]!, embedding: undefined as unknown as string }] },
    ],
  ];

  for (const [name, job] of cases) {
    await assert.rejects(
      identify(job, { index: service, db }, silentLogger),
      isError('INVALID_REQUEST'),
      name,
    );
  }
});

test('identify waits for minSeq of a fresh face', async () => {
  const newcomer = await enrolVisitor(db, random, 'Just enrolled', 1);
  const seq = await maxChangeSeq(db);
  const job = matchJob([noisyCopy(newcomer.centre, random)], { minSeq: seq });

  const result = await identify(job, { index: service, db }, silentLogger);

  assert.equal(result.faces[0]!.match?.visitorId, newcomer.id);
});

test('identify answers after the minSeq wait times out', async () => {
  const visitor = gallery[1]!;
  const job = matchJob([noisyCopy(visitor.centre, random)], { minSeq: service.lastSeq + 1000 });

  const result = await identify(job, { index: service, db, minSeqWaitMs: 50 }, silentLogger);

  assert.equal(result.faces[0]!.match?.visitorId, visitor.id);
});

test('visitors missing from the database are dropped', async () => {
  // An index that lags behind the database still contains a deleted visitor.
  const lagging = new FaceIndex({ modelId: MODEL_ID });
  const ghostId = randomUUID();
  const probe = noisyCopy(gallery[5]!.centre, random);
  lagging.add(1, ghostId, probe);
  lagging.add(2, gallery[5]!.id, gallery[5]!.faces[0]!.vector);
  const index: MatchIndex = {
    modelId: MODEL_ID,
    scoring: 'fused',
    lastSeq: 0,
    assertServing: () => undefined,
    waitForSeq: () => Promise.resolve(true),
    search: (vector, k) => lagging.search(vector, { k }),
  };

  const result = await identify(matchJob([probe]), { index, db }, silentLogger);

  const face = result.faces[0]!;
  assert.deepEqual(
    face.candidates.map((candidate) => candidate.visitorId),
    [gallery[5]!.id],
  );
  assert.equal(face.match?.visitorId, gallery[5]!.id);
});
