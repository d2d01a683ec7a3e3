import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { test } from 'node:test';

import {
  BATCH_ITEMS_PER_JOB,
  addBatchItemJobs,
  createQueues,
  createRedis,
  keyNames,
} from '@facegate/contracts';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

test('planning a chunk again queues no second job for a group still queued', async (t) => {
  const redis = createRedis(REDIS_URL, { blocking: true });
  const prefix = `facegate-test-${randomBytes(4).toString('hex')}`;
  const queues = createQueues(redis, keyNames(prefix));
  t.after(async () => {
    await queues.close();
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  const batchId = randomUUID();
  const keys = Array.from({ length: 2 * BATCH_ITEMS_PER_JOB + 5 }, (_, i) => `p/${i}.jpg`);

  await addBatchItemJobs(queues, batchId, keys, new Set(keys));
  // As after a crash: the first items are finished, the rest still queued.
  const unfinished = new Set(keys.slice(10));
  await addBatchItemJobs(queues, batchId, keys, unfinished);

  const jobs = await queues.batch.getJobs(['waiting']);
  assert.equal(jobs.length, 3);
  const queued = jobs.flatMap((job) => (job.data.kind === 'items' ? job.data.itemKeys : []));
  assert.deepEqual(queued.sort(), [...keys].sort());

  // A group with no unfinished item gets no job; the others keep their ids.
  await queues.batch.obliterate({ force: true });
  await addBatchItemJobs(queues, batchId, keys, new Set(keys.slice(BATCH_ITEMS_PER_JOB)), 16);
  const smaller = await queues.batch.getJobs(['waiting']);
  assert.equal(smaller.length, Math.ceil((BATCH_ITEMS_PER_JOB + 5) / 16));
  assert.ok(smaller.every((job) => job.data.kind === 'items' && job.data.itemKeys.length <= 16));
});
