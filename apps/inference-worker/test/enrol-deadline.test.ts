import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { FACES_MISSING, facesDir, loadConfig } from '@facegate/config';
import {
  type InferenceJob,
  createQueues,
  createRedis,
  keyNames,
  newBlobKey,
  putBlob,
} from '@facegate/contracts';
import { createDatabase, createVisitor, listFaces, migrate } from '@facegate/db';

import { DeadlineError, type HandlerContext, handleInferenceJob } from '../src/handlers.js';
import { VisionPool } from '../src/pool.js';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const faces = facesDir();
const skip = faces ? false : FACES_MISSING;

let context: HandlerContext;
let photo: Buffer;

before(async () => {
  if (!faces) return;
  const db = createDatabase({
    url: DATABASE_URL,
    schema: `facegate_test_${randomBytes(6).toString('hex')}`,
  });
  await migrate(db);
  const pool = new VisionPool(1);
  await pool.warmUp();
  const redis = createRedis(REDIS_URL);
  const keys = keyNames(`facegate-test-${randomBytes(4).toString('hex')}`);
  context = { config: loadConfig({}), pool, redis, keys, queues: createQueues(redis, keys), db };
  photo = await readFile(
    join(faces, 'identity-small', 'face_recognition_knn', 'test', 'obama1.jpg'),
  );
});

after(async () => {
  if (!context) return;
  await context.pool.close();
  await context.queues.close();
  const left = await context.redis.keys(`${context.keys.prefix}:*`);
  if (left.length > 0) await context.redis.del(...left);
  context.redis.disconnect();
  await context.db.sql`drop schema if exists ${context.db.sql(context.db.schema)} cascade`;
  await context.db.close();
});

/** Builds an enrolment job for `visitorId` with the photo stored as its blob. */
async function enrolJob(visitorId: string, deadline: number): Promise<InferenceJob> {
  const blobKey = newBlobKey(context.keys);
  await putBlob(context.redis, blobKey, photo, 60_000);
  return {
    kind: 'enrol',
    correlationId: randomUUID(),
    replyTo: context.keys.replyChannel('gateway-test'),
    requestId: randomUUID(),
    deadline,
    blobKey,
    visitorId,
    multipleFaces: 'strict',
  };
}

test('enrolment near its deadline stores nothing', { skip }, async () => {
  const late = await createVisitor(context.db, { name: 'Late' });
  const early = await createVisitor(context.db, { name: 'Early' });
  // Queued 9.5 s ago with a 10 s budget: less than the write margin is left.
  const lateJob = await enrolJob(late.id, Date.now() + 500);
  const earlyJob = await enrolJob(early.id, Date.now() + 60_000);

  const rejected = await handleInferenceJob(context, lateJob, 9_500).catch(
    (error: unknown) => error,
  );
  const stored = await handleInferenceJob(context, earlyJob, 0);

  assert.ok(rejected instanceof DeadlineError, `expected a DeadlineError, got ${String(rejected)}`);
  assert.equal(rejected.code, 'TIMEOUT');
  assert.equal((await listFaces(context.db, late.id)).length, 0);
  assert.ok('reply' in stored);
  assert.equal((await listFaces(context.db, early.id)).length, 1);
});
