import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import type { MatchJob, Reply } from '@facegate/contracts';
import { createRedis, encodeVector, keyNames } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import { FaceIndex } from '@facegate/index';
import type { Redis } from 'ioredis';

import type { MatchIndex, MatchInput } from '../src/index.js';
import { createMatchProcessor } from '../src/index.js';
import type { EnrolledVisitor } from './helpers.js';
import {
  MODEL_ID,
  REDIS_URL,
  createRandom,
  dropTestDatabase,
  enrolVisitor,
  noisyCopy,
  openTestDatabase,
  silentLogger,
  subscribeReplies,
  uniqueName,
  waitUntil,
} from './helpers.js';

const keys = keyNames(uniqueName('matcher_test'));
const random = createRandom(201);
let db: Database;
let redis: Redis;
let subscriber: Redis;
let visitor: EnrolledVisitor;
const replies = new Map<string, Reply>();

before(async () => {
  db = await openTestDatabase();
  visitor = await enrolVisitor(db, random, 'Replied', 2);
  redis = createRedis(REDIS_URL);
  await waitUntil(() => redis.status === 'ready', 'Redis is ready');
  subscriber = await subscribeReplies(keys.replyChannel('gateway-1'), replies);
});

after(async () => {
  await subscriber.quit();
  await redis.quit();
  await dropTestDatabase(db);
});

/** Builds an index over the enrolled visitor whose search throws `searchError` when one is given. */
function fakeIndex(searchError?: Error): MatchIndex {
  const faces = new FaceIndex({ modelId: MODEL_ID });
  for (const face of visitor.faces) faces.add(face.faceId, visitor.id, face.vector);
  return {
    modelId: MODEL_ID,
    scoring: 'fused',
    lastSeq: 0,
    assertServing: () => undefined,
    waitForSeq: () => Promise.resolve(true),
    search: (vector, k) => {
      if (searchError) throw searchError;
      return faces.search(vector, { k });
    },
  };
}

/** Builds a delivery of `job` as the match stream gives it, added 30 ms ago. */
function delivery(job: MatchJob, attempt = 1): MatchInput {
  const enqueuedAt = Date.now() - 30;
  return { id: `${enqueuedAt}-0`, job, attempt, enqueuedAt };
}

function matchJob(vector: Float32Array): MatchJob {
  return {
    kind: 'identify',
    correlationId: randomUUID(),
    replyTo: keys.replyChannel('gateway-1'),
    requestId: randomUUID(),
    modelId: MODEL_ID,
    image: { width: 320, height: 240 },
    faces: [
      {
        box: { x: 1, y: 2, width: 50, height: 60 },
        score: 0.8,
        landmarks: [],
        embedding: encodeVector(vector),
      },
    ],
    params: { topK: 2, minSeq: 0 },
    timings: { detectMs: 7 },
  };
}

async function replyTo(correlationId: string): Promise<Reply> {
  await waitUntil(() => replies.has(correlationId), `a reply to ${correlationId} arrives`, 5000);
  return replies.get(correlationId)!;
}

/** Waits long enough for an unexpected reply to arrive, so its absence is meaningful. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 200));
}

test('success is published with queue wait', async () => {
  const processJob = createMatchProcessor({ index: fakeIndex(), db, redis, logger: silentLogger });
  const job = matchJob(noisyCopy(visitor.centre, random));

  const outcome = await processJob(delivery(job));

  assert.equal(outcome, 'replied');
  const reply = await replyTo(job.correlationId);
  assert.equal(reply.ok, true);
  const result = reply.result as {
    faces: Array<{ match: { visitorId: string; name: string } | null }>;
    timings: Record<string, number>;
  };
  assert.equal(result.faces[0]?.match?.visitorId, visitor.id);
  assert.equal(result.faces[0]?.match?.name, 'Replied');
  assert.equal(result.timings.detectMs, 7);
  assert.ok(
    result.timings.matchQueueWaitMs! >= 30,
    `queueWaitMs ${result.timings.matchQueueWaitMs}`,
  );
  assert.equal(typeof result.timings.matchMs, 'number');
});

test('input error is published and not retried', async () => {
  const processJob = createMatchProcessor({ index: fakeIndex(), db, redis, logger: silentLogger });
  const job = { ...matchJob(visitor.centre), modelId: 'sface_2021dec' };

  assert.equal(await processJob(delivery(job)), 'rejected');

  const reply = await replyTo(job.correlationId);
  assert.equal(reply.ok, false);
  const { error } = reply;
  assert.equal(error.code, 'MODEL_MISMATCH');
  assert.equal(error.status, 409);
  assert.match(error.message, /sface_2021dec/);
});

test('retryable error waits for the last attempt', async () => {
  const failure = new FaceGateError('DEPENDENCY_UNAVAILABLE', 'PostgreSQL is unavailable');
  const processJob = createMatchProcessor({
    index: fakeIndex(failure),
    db,
    redis,
    logger: silentLogger,
  });
  const job = matchJob(visitor.centre);

  assert.equal(await processJob(delivery(job, 1)), 'retry');
  await settle();
  assert.equal(replies.has(job.correlationId), false);

  assert.equal(await processJob(delivery(job, 2)), 'failed');
  const reply = await replyTo(job.correlationId);
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, 'DEPENDENCY_UNAVAILABLE');
});

test('unexpected error is reported as INTERNAL', async () => {
  const processJob = createMatchProcessor({
    index: fakeIndex(new Error('graph exploded')),
    db,
    redis,
    logger: silentLogger,
  });
  const job = matchJob(visitor.centre);

  assert.equal(await processJob(delivery(job, 2)), 'failed');

  const reply = await replyTo(job.correlationId);
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, 'INTERNAL');
});

test('request without replyTo is dropped', async () => {
  const processJob = createMatchProcessor({ index: fakeIndex(), db, redis, logger: silentLogger });
  const job = { ...matchJob(visitor.centre), replyTo: undefined as unknown as string };

  assert.equal(await processJob(delivery(job)), 'rejected');
  assert.equal(await processJob({ ...delivery(job), job: undefined }), 'rejected');
});
