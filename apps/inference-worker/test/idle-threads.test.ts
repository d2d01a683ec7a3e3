import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';
import { createQueues, createRedis, keyNames } from '@facegate/contracts';
import { createLogger } from '@facegate/logger';

import { VisionPool } from '../src/pool.js';
import { ServiceLoadSampler } from '../src/service-load.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const faces = facesDir();
const silent = createLogger('inference-worker-test', 'silent');

test('service load sampler reads the queues when asked', async (t) => {
  const redis = createRedis(REDIS_URL, { blocking: true });
  const prefix = `facegate-test-${randomBytes(4).toString('hex')}`;
  const queues = createQueues(redis, keyNames(prefix));
  const sampler = new ServiceLoadSampler(redis, queues, silent);
  t.after(async () => {
    sampler.stop();
    await queues.close();
    // Every queue, the match queue too, leaves keys under the prefix.
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });
  const readIdle = async (): Promise<boolean> => {
    await sampler.refresh();
    return sampler.idle;
  };

  assert.equal(sampler.idle, false, 'not idle before the first read');
  assert.equal(await readIdle(), true, 'empty queues read as idle');
  assert.equal(sampler.take(), true);
  assert.equal(sampler.idle, false, 'one read lets one task use the idle sessions');

  const request = {
    kind: 'detect',
    correlationId: 'c',
    replyTo: 'r',
    requestId: 'q',
    blobKey: 'b',
    params: {},
  };
  await queues.inference.add('detect', request as never);
  assert.equal(await readIdle(), true, 'the job about to start alone reads as idle');
  await queues.inference.add('detect', request as never);
  assert.equal(await readIdle(), false, 'two waiting inference jobs read as busy');

  await queues.inference.obliterate({ force: true });
  assert.equal(await readIdle(), true, 'idle again once the jobs are gone');

  await queues.inference.add('detect', request as never, { priority: 5 });
  await queues.inference.add('detect', request as never, { priority: 5 });
  assert.equal(await readIdle(), false, 'prioritized inference jobs read as busy');
  await queues.inference.obliterate({ force: true });

  await queues.batch.add('item', { kind: 'item', batchId: 'b', itemKey: 'k' });
  assert.equal(await readIdle(), false, 'a waiting batch job reads as busy');
  await queues.batch.obliterate({ force: true });
  assert.equal(await readIdle(), true);

  sampler.stop();
  await sampler.refresh();
  assert.equal(sampler.idle, false, 'never idle after stop()');
});

test('lone task runs on the idle sessions', { skip: faces ? false : FACES_MISSING }, async () => {
  // The thread reads its configuration from the environment when it starts.
  process.env.ONNX_THREADS = '1';
  process.env.ONNX_IDLE_THREADS = '2';
  const pool = new VisionPool(1);
  after(() => pool.close());
  const photo = await readFile(
    join(faces!, 'identity-small', 'face_recognition_knn', 'test', 'obama1.jpg'),
  );
  // The pool transfers a standalone buffer to the thread, so each call gets its own copy.
  const bytes = (): Uint8Array => Uint8Array.from(photo);

  const ping = await pool.warmUp();
  assert.equal(ping.idleThreads, 2);

  pool.serviceIdle = () => false;
  const busy = await pool.analyze(bytes(), {});
  assert.equal(pool.idleRuns, 0);

  pool.serviceIdle = () => true;
  const idle = await pool.analyze(bytes(), {});
  assert.equal(pool.idleRuns, 1);

  // Two tasks at once: only the first finds the pool empty.
  await Promise.all([pool.analyze(bytes(), {}), pool.analyze(bytes(), {})]);
  assert.equal(pool.idleRuns, 2);

  // Both session sets run the same models on the same input.
  assert.equal(idle.faces.length, busy.faces.length);
  assert.deepEqual(idle.faces[0]!.box, busy.faces[0]!.box);
  let dot = 0;
  for (let i = 0; i < busy.faces[0]!.embedding.length; i += 1)
    dot += busy.faces[0]!.embedding[i]! * idle.faces[0]!.embedding[i]!;
  assert.ok(dot > 0.9999, `embeddings differ: cosine ${dot}`);
});
