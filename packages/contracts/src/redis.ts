import { randomUUID } from 'node:crypto';

import { FaceGateError } from '@facegate/errors';
import { Redis } from 'ioredis';

import type { HeartbeatRole, KeyNames } from './keys.js';
import type { Reply } from './messages.js';

/**
 * Opens a Redis connection for BullMQ and the service: commands are not queued
 * while disconnected (requests fail fast with 503), and it reconnects forever
 * with a capped backoff so the service recovers when Redis returns.
 */
export function createRedis(url: string, options: { blocking?: boolean } = {}): Redis {
  return new Redis(url, {
    // BullMQ requires null for its blocking connections.
    maxRetriesPerRequest: options.blocking ? null : 1,
    enableOfflineQueue: options.blocking ?? false,
    connectTimeout: 2000,
    retryStrategy: (attempt) => Math.min(100 * 2 ** attempt, 2000),
    lazyConnect: false,
  });
}

export function redisUnavailable(error: unknown): FaceGateError {
  const message = error instanceof Error ? error.message : String(error);
  // ioredis words a lost connection in terms of its own options ("Stream isn't writeable and
  // enableOfflineQueue options is false"), which mean nothing to a client.
  const reason = CONNECTION_LOST.test(message) ? 'the connection to Redis is down' : message;
  return new FaceGateError(
    'DEPENDENCY_UNAVAILABLE',
    `Redis is unavailable: ${reason}; retry shortly`,
    {
      cause: error,
    },
  );
}

/** Pattern of the ioredis and socket messages of a connection that is down or reconnecting. */
const CONNECTION_LOST =
  /enableOfflineQueue|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND/;

/** Returns a new key for an uploaded image (see putBlob). */
export function newBlobKey(keys: KeyNames): string {
  return keys.blob(randomUUID());
}

/** Stores image bytes under `key` (from newBlobKey), expiring after `ttlMs`. */
export async function putBlob(
  redis: Redis,
  key: string,
  bytes: Uint8Array,
  ttlMs: number,
): Promise<void> {
  await redis.set(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'PX', ttlMs);
}

export async function getBlob(redis: Redis, key: string): Promise<Buffer> {
  const bytes = await redis.getBuffer(key);
  if (!bytes) {
    throw new FaceGateError(
      'TIMEOUT',
      `the uploaded image expired before a worker took the job (key ${key})`,
    );
  }
  return bytes;
}

export async function publishReply(redis: Redis, channel: string, reply: Reply): Promise<void> {
  await redis.publish(channel, JSON.stringify(reply));
}

export interface Heartbeat {
  id: string;
  role: HeartbeatRole;
  host: string;
  pid: number;
  startedAt: string;
  updatedAt: string;
  ready: boolean;
  detail: Record<string, unknown>;
}

/**
 * Milliseconds since the epoch by Redis's clock, in a script. The sets of heartbeats are
 * scored and read with this one clock, so a host whose clock is off does not count as gone.
 */
const REDIS_NOW =
  "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

/**
 * KEYS: the heartbeats set and the live set of a role; ARGV: id, milliseconds until it
 * expires, '1' when ready. Members past their time are dropped on each write, so the sets
 * stay as small as the fleet.
 */
const MARK_HEARTBEAT =
  REDIS_NOW +
  "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) " +
  "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) " +
  "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) " +
  "if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1]) " +
  "else redis.call('ZREM', KEYS[2], ARGV[1]) end return 0";

/** KEYS[1] a set of heartbeats; returns how many members have not yet passed their time. */
const COUNT_CURRENT = REDIS_NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')";

/** KEYS[1] a set of heartbeats; returns the members that have not yet passed their time. */
const LIST_CURRENT = REDIS_NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')";

/**
 * Writes a heartbeat that expires after three intervals unless refreshed, and keeps the
 * process in its role's set of heartbeats, and in the live set while it is ready.
 */
export async function writeHeartbeat(
  redis: Redis,
  keys: KeyNames,
  heartbeat: Heartbeat,
  intervalMs: number,
): Promise<void> {
  const { role, id } = heartbeat;
  const ttlMs = intervalMs * 3;
  // One transaction, so that a reader that sees the heartbeat ready also finds it in the live set.
  await redis
    .multi()
    .set(keys.heartbeat(role, id), JSON.stringify(heartbeat), 'PX', ttlMs)
    .eval(
      MARK_HEARTBEAT,
      2,
      keys.heartbeats(role),
      keys.live(role),
      id,
      ttlMs,
      heartbeat.ready ? '1' : '0',
    )
    .exec();
}

export async function removeHeartbeat(
  redis: Redis,
  keys: KeyNames,
  role: HeartbeatRole,
  id: string,
): Promise<void> {
  await redis
    .multi()
    .del(keys.heartbeat(role, id))
    .zrem(keys.heartbeats(role), id)
    .zrem(keys.live(role), id)
    .exec();
}

/**
 * Counts the ready processes of one role whose last heartbeat is younger than three
 * intervals: one command on a key of a few members, cheap enough to run several times a
 * second.
 */
export async function countLive(
  redis: Redis,
  keys: KeyNames,
  role: HeartbeatRole,
): Promise<number> {
  return Number(await redis.eval(COUNT_CURRENT, 1, keys.live(role)));
}

/**
 * Lists the current heartbeats of one role, ready or not. It reads the role's set of
 * heartbeats and then their keys, so its cost does not grow with the other keys in Redis.
 */
export async function readHeartbeats(
  redis: Redis,
  keys: KeyNames,
  role: HeartbeatRole,
): Promise<Heartbeat[]> {
  const ids = (await redis.eval(LIST_CURRENT, 1, keys.heartbeats(role))) as string[];
  if (ids.length === 0) return [];
  const values = await redis.mget(ids.map((id) => keys.heartbeat(role, id)));
  return values.flatMap((value) => (value ? [JSON.parse(value) as Heartbeat] : []));
}

/** Resolves once the connection is ready; commands sent before would fail fast. */
export async function waitForRedis(
  redis: Redis,
  onWaiting?: (error: Error) => void,
): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve) => {
    const onError = (error: Error): void => onWaiting?.(error);
    redis.on('error', onError);
    redis.once('ready', () => {
      redis.off('error', onError);
      resolve();
    });
  });
}
