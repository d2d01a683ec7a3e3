import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { type TestContext, test } from 'node:test';

import {
  type InferenceJob,
  type KeyNames,
  type MatchJob,
  createRedis,
  keyNames,
  parseMatchEntry,
  waitForRedis,
} from '@facegate/contracts';
import type { Redis } from 'ioredis';

import { finishJob } from '../src/handlers.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

function recognizeJob(blobKey: string, replyTo: string): InferenceJob {
  return {
    kind: 'recognize',
    correlationId: randomUUID(),
    replyTo,
    requestId: randomUUID(),
    blobKey,
    params: {},
    match: { topK: 1, minSeq: 0 },
  };
}

/** Connects to Redis under a fresh key prefix and stores one image blob there. */
async function setUp(t: TestContext): Promise<{ redis: Redis; keys: KeyNames; blobKey: string }> {
  const redis = createRedis(REDIS_URL);
  const prefix = `facegate-test-${randomBytes(4).toString('hex')}`;
  t.after(async () => {
    try {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
  });
  await waitForRedis(redis);
  const keys = keyNames(prefix);
  const blobKey = keys.blob(randomUUID());
  await redis.set(blobKey, Buffer.from('jpeg bytes'));
  return { redis, keys, blobKey };
}

test('forward: entry added, image deleted', async (t) => {
  const { redis, keys, blobKey } = await setUp(t);
  const job = recognizeJob(blobKey, keys.replyChannel('gateway-1'));
  const forward: MatchJob = {
    kind: 'identify',
    correlationId: job.correlationId,
    replyTo: job.replyTo,
    requestId: job.requestId,
    modelId: 'model',
    image: { width: 640, height: 480 },
    faces: [],
    params: { topK: 1, minSeq: 0 },
    timings: { detectMs: 5 },
  };

  await finishJob(redis, keys, job, { forward });

  const entries = (await redis.xrange(keys.matchStream, '-', '+')) as [string, string[]][];
  assert.equal(entries.length, 1);
  const [id, fields] = entries[0]!;
  const entry = parseMatchEntry(id, fields);
  assert.equal(entry.attempt, 1);
  assert.deepEqual(entry.job, forward);
  assert.equal(await redis.exists(blobKey), 0);
});

test('reply: published, image deleted', async (t) => {
  const { redis, keys, blobKey } = await setUp(t);
  const job = recognizeJob(blobKey, keys.replyChannel('gateway-2'));
  const subscriber = createRedis(REDIS_URL);
  t.after(() => subscriber.disconnect());
  await waitForRedis(subscriber);
  const message = new Promise<string>((resolve) => {
    subscriber.on('message', (_channel: string, text: string) => resolve(text));
  });
  await subscriber.subscribe(job.replyTo);

  await finishJob(redis, keys, job, { reply: { faces: [] } });

  assert.deepEqual(JSON.parse(await message), {
    correlationId: job.correlationId,
    ok: true,
    result: { faces: [] },
  });
  assert.equal(await redis.exists(blobKey), 0);
  assert.equal(await redis.exists(keys.matchStream), 0);
});

test('failed command rejects finishJob', async (t) => {
  const { redis, keys, blobKey } = await setUp(t);
  // A string where the stream should be: XADD fails with WRONGTYPE.
  await redis.set(keys.matchStream, 'not a stream');
  const job = recognizeJob(blobKey, keys.replyChannel('gateway-3'));
  const forward = { ...({} as MatchJob), correlationId: job.correlationId };

  await assert.rejects(finishJob(redis, keys, job, { forward }), /WRONGTYPE/);
});
