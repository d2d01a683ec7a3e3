// The sets of heartbeats that /ready and the gateway's admission read, against the local Redis.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import type { Redis } from 'ioredis';

import {
  type Heartbeat,
  countLive,
  createRedis,
  keyNames,
  readHeartbeats,
  removeHeartbeat,
  waitForRedis,
  writeHeartbeat,
} from '../src/index.js';

const keys = keyNames(`facegate_test_live_${randomUUID().slice(0, 8)}`);
let redis: Redis;

before(async () => {
  redis = createRedis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  await waitForRedis(redis);
});

after(async () => {
  try {
    const leftover = await redis.keys(`${keys.prefix}:*`);
    if (leftover.length > 0) await redis.del(...leftover);
  } finally {
    redis.disconnect();
  }
});

function heartbeat(id: string, ready: boolean): Heartbeat {
  const now = new Date().toISOString();
  return {
    id,
    role: 'worker',
    host: 'test',
    pid: 1,
    startedAt: now,
    updatedAt: now,
    ready,
    detail: {},
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('ready processes count until they stop, turn unready or miss three heartbeats', async () => {
  const counts: Record<string, number> = {};
  const listed: Record<string, string> = {};
  const count = async (label: string): Promise<void> => {
    counts[label] = await countLive(redis, keys, 'worker');
    const heartbeats = await readHeartbeats(redis, keys, 'worker');
    listed[label] = heartbeats
      .map((beat) => `${beat.id}${beat.ready ? '' : '?'}`)
      .sort()
      .join(' ');
  };

  await count('none yet');
  await writeHeartbeat(redis, keys, heartbeat('a', false), 60_000);
  await count('one unready');
  await writeHeartbeat(redis, keys, heartbeat('a', true), 60_000);
  await writeHeartbeat(redis, keys, heartbeat('b', true), 60_000);
  await writeHeartbeat(redis, keys, heartbeat('b', true), 60_000);
  await count('two ready, one of them twice');
  await writeHeartbeat(redis, keys, heartbeat('b', false), 60_000);
  await count('b turned unready');
  await removeHeartbeat(redis, keys, 'worker', 'a');
  await count('a stopped');
  // c beats every 50 ms, so it counts for 150 ms after its last beat.
  await writeHeartbeat(redis, keys, heartbeat('c', true), 50);
  await count('c fresh');
  await sleep(400);
  await count('c silent for 400 ms');
  const matchers = await countLive(redis, keys, 'matcher');

  assert.deepEqual(counts, {
    'none yet': 0,
    'one unready': 0,
    'two ready, one of them twice': 2,
    'b turned unready': 1,
    'a stopped': 0,
    'c fresh': 1,
    'c silent for 400 ms': 0,
  });
  // readHeartbeats lists unready processes too ('?'), for /ready to show their state.
  assert.deepEqual(listed, {
    'none yet': '',
    'one unready': 'a?',
    'two ready, one of them twice': 'a b',
    'b turned unready': 'a b?',
    'a stopped': 'b?',
    'c fresh': 'b? c',
    'c silent for 400 ms': 'b?',
  });
  assert.equal(matchers, 0, 'roles are counted apart');
  // Members past their time are dropped by the next write, so the sets do not grow.
  await writeHeartbeat(redis, keys, heartbeat('d', true), 50);
  await sleep(200);
  await writeHeartbeat(redis, keys, heartbeat('e', true), 60_000);
  assert.deepEqual(await redis.zrange(keys.live('worker'), 0, -1), ['e']);
  assert.deepEqual(await redis.zrange(keys.heartbeats('worker'), 0, -1), ['b', 'e']);
});
