import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { createRedis, keyNames, readHeartbeats } from '@facegate/contracts';
import type { Redis } from 'ioredis';

import type { HeartbeatReading } from '../src/index.js';
import { HeartbeatPublisher } from '../src/index.js';
import { REDIS_URL, silentLogger, uniqueName, waitUntil } from './helpers.js';

const keys = keyNames(uniqueName('matcher_heartbeat'));
let redis: Redis;

before(async () => {
  redis = createRedis(REDIS_URL);
  await waitUntil(() => redis.status === 'ready', 'Redis is ready');
});

after(async () => {
  const leftover = await redis.keys(`${keys.prefix}:*`);
  if (leftover.length > 0) await redis.del(...leftover);
  await redis.quit();
});

function createPublisher(read: () => HeartbeatReading, id: string): HeartbeatPublisher {
  return new HeartbeatPublisher({
    redis,
    keys,
    intervalMs: 60_000,
    logger: silentLogger,
    read,
    id,
  });
}

test('heartbeat carries readiness and detail', async () => {
  const publisher = createPublisher(
    () => ({ ready: false, detail: { state: 'refusing', reason: 'mixed models' } }),
    'refusing-matcher',
  );

  publisher.start();
  await waitUntil(
    async () => (await readHeartbeats(redis, keys, 'matcher')).length === 1,
    'the heartbeat is written',
  );

  const [heartbeat] = await readHeartbeats(redis, keys, 'matcher');
  assert.equal(heartbeat?.id, 'refusing-matcher');
  assert.equal(heartbeat?.role, 'matcher');
  assert.equal(heartbeat?.pid, process.pid);
  assert.equal(heartbeat?.ready, false);
  assert.deepEqual(heartbeat?.detail, { state: 'refusing', reason: 'mixed models' });
  assert.ok(
    (await redis.pttl(keys.heartbeat('matcher', 'refusing-matcher'))) > 60_000,
    'expires after three intervals',
  );
  await publisher.stop();
});

test('publish writes the latest state', async () => {
  let ready = false;
  const publisher = createPublisher(() => ({ ready, detail: {} }), 'changing-matcher');
  publisher.start();

  ready = true;
  publisher.publish();
  await waitUntil(async () => {
    const heartbeats = await readHeartbeats(redis, keys, 'matcher');
    return heartbeats.some((heartbeat) => heartbeat.id === 'changing-matcher' && heartbeat.ready);
  }, 'the heartbeat says ready');

  await publisher.stop();
});

test('stop removes the heartbeat', async () => {
  const publisher = createPublisher(() => ({ ready: true, detail: {} }), 'leaving-matcher');
  publisher.start();
  await waitUntil(
    async () => (await redis.exists(keys.heartbeat('matcher', 'leaving-matcher'))) === 1,
    'the heartbeat is written',
  );

  await publisher.stop();
  publisher.publish();

  assert.equal(await redis.exists(keys.heartbeat('matcher', 'leaving-matcher')), 0);
});

test('a publish just as a write ends is not lost', async () => {
  // A stand-in for Redis, so that a publish() can be placed at each microtask step after a
  // write ends. Real Redis cannot be timed this finely.
  for (let delay = 0; delay < 12; delay += 1) {
    const written: string[] = [];
    let state = 'old';
    const fake = {
      multi() {
        const chain = {
          set: (_key: string, value: string) => {
            written.push((JSON.parse(value) as { detail: { state: string } }).detail.state);
            return chain;
          },
          eval: () => chain,
          del: () => chain,
          zrem: () => chain,
          exec: async () => {
            // Publish `delay` microtask steps after this write resolves.
            let step: Promise<void> = Promise.resolve();
            for (let i = 0; i <= delay; i += 1) step = step.then(() => undefined);
            void step.then(() => {
              if (state === 'old') {
                state = 'new';
                publisher.publish();
              }
            });
            return [];
          },
        };
        return chain;
      },
    };
    const publisher = new HeartbeatPublisher({
      redis: fake as unknown as Redis,
      keys,
      intervalMs: 60_000,
      logger: silentLogger,
      read: () => ({ ready: true, detail: { state } }),
      id: `fake-${delay}`,
    });

    publisher.start();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await publisher.stop();

    assert.equal(
      written.at(-1),
      'new',
      `publish ${delay} steps after the write: ${written.join(',')}`,
    );
  }
});
