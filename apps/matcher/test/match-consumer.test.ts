// The match stream consumer against the local Redis: replies and acknowledgement, retries,
// taking over the requests of a matcher that stopped, a lost group, and shutdown. The processor
// is a stand-in that records what it is given; identify itself is tested elsewhere.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, test } from 'node:test';

import type { MatchJob, Reply } from '@facegate/contracts';
import { MATCH_GROUP, addMatchJob, createRedis, keyNames } from '@facegate/contracts';
import type { Redis } from 'ioredis';

import type { MatchInput, MatchOutcome, MatchSettlement } from '../src/index.js';
import { MatchConsumer } from '../src/index.js';
import { REDIS_URL, silentLogger, subscribeReplies, uniqueName, waitUntil } from './helpers.js';

const keys = keyNames(uniqueName('consumer_test'));
let redis: Redis;
let subscriber: Redis;
const replies = new Map<string, Reply>();
const consumers: MatchConsumer[] = [];

before(async () => {
  redis = createRedis(REDIS_URL);
  await waitUntil(() => redis.status === 'ready', 'Redis is ready');
  subscriber = await subscribeReplies(keys.replyChannel('gateway-1'), replies);
});

afterEach(async () => {
  await Promise.all(consumers.splice(0).map((consumer) => consumer.close()));
  await redis.del(keys.matchStream);
});

after(async () => {
  await subscriber.quit();
  await redis.quit();
});

function matchJob(): MatchJob {
  return {
    kind: 'identify',
    correlationId: randomUUID(),
    replyTo: keys.replyChannel('gateway-1'),
    requestId: randomUUID(),
    modelId: 'mobilefacenet_foamliu_128d',
    image: { width: 320, height: 240 },
    faces: [],
    params: { topK: 1, minSeq: 0 },
    timings: {},
  };
}

/** Starts a consumer whose processor records each delivery and returns what `outcomes` returns for it. */
async function startConsumer(
  outcomes: (
    delivery: MatchInput,
  ) => MatchOutcome | MatchSettlement | Promise<MatchOutcome | MatchSettlement>,
  options: { claimIdleMs?: number; name?: string } = {},
): Promise<{ consumer: MatchConsumer; seen: MatchInput[] }> {
  const seen: MatchInput[] = [];
  const consumer = new MatchConsumer({
    reader: createRedis(REDIS_URL, { blocking: true }),
    redis,
    keys,
    name: options.name ?? `test-${randomUUID().slice(0, 8)}`,
    concurrency: 4,
    logger: silentLogger,
    claimIdleMs: options.claimIdleMs ?? 60_000,
    retryDelayMs: 10,
    blockMs: 200,
    process: async (delivery) => {
      seen.push(delivery);
      const settlement = await outcomes(delivery);
      return typeof settlement === 'string' ? { outcome: settlement } : settlement;
    },
  });
  consumers.push(consumer);
  await consumer.start();
  return { consumer, seen };
}

async function pendingCount(): Promise<number> {
  const summary = (await redis.xpending(keys.matchStream, MATCH_GROUP)) as [number, ...unknown[]];
  return summary[0];
}

/** Reads one request as a consumer named `name` that never acknowledges it (a dead matcher). */
async function deliverToDeadConsumer(name: string): Promise<void> {
  await redis
    .xgroup('CREATE', keys.matchStream, MATCH_GROUP, '0', 'MKSTREAM')
    .catch(() => undefined);
  await redis.xreadgroup('GROUP', MATCH_GROUP, name, 'COUNT', 10, 'STREAMS', keys.matchStream, '>');
}

test('requests are processed and acknowledged', async () => {
  const { seen } = await startConsumer(() => 'replied');
  const job = matchJob();

  const id = await addMatchJob(redis, keys, job);

  await waitUntil(() => seen.length === 1, 'the request is processed');
  assert.equal(seen[0]!.id, id);
  assert.equal(seen[0]!.job?.correlationId, job.correlationId);
  assert.equal(seen[0]!.attempt, 1);
  assert.ok(Math.abs(seen[0]!.enqueuedAt - Date.now()) < 5000);
  await waitUntil(async () => (await redis.xlen(keys.matchStream)) === 0, 'the entry is deleted');
  assert.equal(await pendingCount(), 0);
});

test('reply is published with the acknowledgement', async () => {
  const { seen } = await startConsumer((delivery) => ({
    outcome: 'replied',
    reply: {
      channel: delivery.job!.replyTo,
      message: { correlationId: delivery.job!.correlationId, ok: true, result: { faces: [] } },
    },
  }));
  const job = matchJob();

  await addMatchJob(redis, keys, job);

  await waitUntil(() => replies.has(job.correlationId), 'the reply arrives');
  assert.deepEqual(replies.get(job.correlationId), {
    correlationId: job.correlationId,
    ok: true,
    result: { faces: [] },
  });
  assert.equal(seen.length, 1);
  await waitUntil(async () => (await redis.xlen(keys.matchStream)) === 0, 'the entry is deleted');
  assert.equal(await pendingCount(), 0);
});

test('a retry comes back once as attempt 2', async () => {
  const { seen } = await startConsumer((delivery) => (delivery.attempt === 1 ? 'retry' : 'failed'));
  const job = matchJob();

  await addMatchJob(redis, keys, job);

  await waitUntil(() => seen.length === 2, 'the request is delivered twice');
  assert.deepEqual(
    seen.map((delivery) => [delivery.job?.correlationId, delivery.attempt]),
    [
      [job.correlationId, 1],
      [job.correlationId, 2],
    ],
  );
  await waitUntil(async () => (await redis.xlen(keys.matchStream)) === 0, 'both entries leave');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(seen.length, 2, 'a failed last attempt is not retried');
});

test('requests of a stopped matcher are taken over', async () => {
  const job = matchJob();
  await addMatchJob(redis, keys, job);
  await deliverToDeadConsumer('dead-matcher');
  const { consumer, seen } = await startConsumer(() => 'replied', { claimIdleMs: 100 });

  await new Promise((resolve) => setTimeout(resolve, 150));
  await consumer.claim();

  await waitUntil(() => seen.length === 1, 'the request is processed by the live matcher');
  assert.equal(seen[0]!.job?.correlationId, job.correlationId);
  assert.equal(seen[0]!.attempt, 2);
  await waitUntil(async () => (await pendingCount()) === 0, 'nothing is left pending');
});

test('a request that had every attempt gets an error', async () => {
  const job = matchJob();
  await addMatchJob(redis, keys, job, 2);
  await deliverToDeadConsumer('dead-matcher');
  const { consumer, seen } = await startConsumer(() => 'replied', { claimIdleMs: 100 });

  await new Promise((resolve) => setTimeout(resolve, 150));
  await consumer.claim();

  await waitUntil(() => replies.has(job.correlationId), 'an error reply arrives');
  const reply = replies.get(job.correlationId)!;
  assert.equal(reply.ok, false);
  assert.equal(reply.ok === false && reply.error.code, 'INTERNAL');
  assert.equal(seen.length, 0, 'the request is not processed a third time');
  assert.equal(await pendingCount(), 0);
});

test('a lost group is created again', async () => {
  const { seen } = await startConsumer(() => 'replied');
  // As after a Redis restart without its data: the stream and its group are gone.
  await redis.del(keys.matchStream);
  await new Promise((resolve) => setTimeout(resolve, 300));

  await waitUntil(
    async () => {
      await addMatchJob(redis, keys, matchJob());
      return seen.length > 0;
    },
    'a request added after the loss is processed',
    10_000,
  );
});

test('close waits for the requests in progress', async () => {
  let finished = false;
  const { consumer, seen } = await startConsumer(async (): Promise<MatchOutcome> => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    finished = true;
    return 'replied';
  });
  await addMatchJob(redis, keys, matchJob());
  await waitUntil(() => seen.length === 1, 'the request starts');

  await consumer.close();

  assert.equal(finished, true);
  assert.equal(await pendingCount(), 0);
  assert.equal(consumer.running, false);
});

test('close keeps a consumer with pending requests', async () => {
  await addMatchJob(redis, keys, matchJob());
  // Delivered to this consumer's name by a read whose reply it never processed.
  await deliverToDeadConsumer('restarting-matcher');
  const { consumer } = await startConsumer(() => 'replied', { name: 'restarting-matcher' });

  await consumer.close();

  const consumers = (await redis.xinfo('CONSUMERS', keys.matchStream, MATCH_GROUP)) as unknown[][];
  const names = consumers.map((fields) => fields[fields.indexOf('name') + 1]);
  assert.deepEqual(names, ['restarting-matcher']);
  assert.equal(await pendingCount(), 1, 'the request stays pending for a claim');
});
