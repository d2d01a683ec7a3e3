import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import type { MatchJob, Reply } from '@facegate/contracts';
import { encodeVector, keyNames } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import { FaceIndex } from '@facegate/index';

import type { MatchIndex, MatchInput, MatchSettlement } from '../src/index.js';
import { createMatchProcessor } from '../src/index.js';
import type { EnrolledVisitor } from './helpers.js';
import {
  MODEL_ID,
  createRandom,
  dropTestDatabase,
  enrolVisitor,
  noisyCopy,
  openTestDatabase,
  silentLogger,
  uniqueName,
} from './helpers.js';

const keys = keyNames(uniqueName('matcher_test'));
const random = createRandom(201);
let db: Database;
let visitor: EnrolledVisitor;

before(async () => {
  db = await openTestDatabase();
  visitor = await enrolVisitor(db, random, 'Replied', 2);
});

after(async () => {
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

/** Returns the settlement's reply after checking that it goes to the job's channel. */
function replyOf(settlement: MatchSettlement, job: MatchJob): Reply {
  assert.ok(settlement.reply, `outcome ${settlement.outcome} has a reply`);
  assert.equal(settlement.reply.channel, job.replyTo);
  assert.equal(settlement.reply.message.correlationId, job.correlationId);
  return settlement.reply.message;
}

test('success replies with queue wait', async () => {
  const processJob = createMatchProcessor({ index: fakeIndex(), db, logger: silentLogger });
  const job = matchJob(noisyCopy(visitor.centre, random));

  const settlement = await processJob(delivery(job));

  assert.equal(settlement.outcome, 'replied');
  const reply = replyOf(settlement, job);
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

test('request past its deadline is skipped', async () => {
  let searches = 0;
  const index = fakeIndex();
  const counting: MatchIndex = {
    ...index,
    search: (vector, k) => {
      searches += 1;
      return index.search(vector, k);
    },
  };
  const processJob = createMatchProcessor({ index: counting, db, logger: silentLogger });
  const late = { ...matchJob(visitor.centre), deadline: Date.now() - 1 };
  const current = { ...matchJob(visitor.centre), deadline: Date.now() + 60_000 };

  const skipped = await processJob(delivery(late));
  const answered = await processJob(delivery(current));

  assert.equal(skipped.outcome, 'expired');
  assert.equal(skipped.reply, undefined);
  assert.equal(answered.outcome, 'replied');
  assert.equal(searches, 1);
});

test('input error replies and is not retried', async () => {
  const processJob = createMatchProcessor({ index: fakeIndex(), db, logger: silentLogger });
  const job = { ...matchJob(visitor.centre), modelId: 'sface_2021dec' };

  const settlement = await processJob(delivery(job));

  assert.equal(settlement.outcome, 'rejected');
  const reply = replyOf(settlement, job);
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
    logger: silentLogger,
  });
  const job = matchJob(visitor.centre);

  const first = await processJob(delivery(job, 1));
  assert.equal(first.outcome, 'retry');
  assert.equal(first.reply, undefined);

  const last = await processJob(delivery(job, 2));
  assert.equal(last.outcome, 'failed');
  const reply = replyOf(last, job);
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, 'DEPENDENCY_UNAVAILABLE');
});

test('unexpected error is reported as INTERNAL', async () => {
  const processJob = createMatchProcessor({
    index: fakeIndex(new Error('graph exploded')),
    db,
    logger: silentLogger,
  });
  const job = matchJob(visitor.centre);

  const settlement = await processJob(delivery(job, 2));

  assert.equal(settlement.outcome, 'failed');
  const reply = replyOf(settlement, job);
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, 'INTERNAL');
});

test('request without replyTo is dropped', async () => {
  const processJob = createMatchProcessor({ index: fakeIndex(), db, logger: silentLogger });
  const job = { ...matchJob(visitor.centre), replyTo: undefined as unknown as string };

  assert.deepEqual(await processJob(delivery(job)), { outcome: 'rejected' });
  assert.deepEqual(await processJob({ ...delivery(job), job: undefined }), { outcome: 'rejected' });
});
