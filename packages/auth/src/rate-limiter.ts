/**
 * Per-key request rate limit kept in Redis, so it applies across gateway instances.
 * It is a generic cell rate algorithm (GCRA): each identity has one key that stores the
 * theoretical arrival time of its next request, updated by a Lua script in one round trip.
 * The script reads Redis's clock, so gateways with skewed clocks agree.
 */
import type { Redis } from 'ioredis';

export interface RateLimitOptions {
  /** Sustained requests per second allowed to one key. */
  ratePerSecond: number;
  /** Requests one key may send at once after being idle. */
  burst: number;
  /** Prefix of the Redis keys, e.g. the queue prefix. */
  prefix: string;
}

export interface RateLimitDecision {
  allowed: boolean;
  /** Milliseconds until a rejected request would be allowed; 0 when allowed. */
  retryAfterMs: number;
}

// KEYS[1]: bucket. ARGV[1]: milliseconds between requests at the sustained rate.
// ARGV[2]: burst. Returns {allowed (0 or 1), milliseconds to wait}.
const GCRA_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - tolerance
if allowed_at > now then
  return {0, math.ceil(allowed_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return {1, 0}
`;

type RedisWithGcra = Redis & {
  facegateGcra(key: string, intervalMs: number, burst: number): Promise<[number, number]>;
};

export class RateLimiter {
  readonly #redis: RedisWithGcra;
  readonly #options: RateLimitOptions;
  readonly #intervalMs: number;

  constructor(redis: Redis, options: RateLimitOptions) {
    if (!(options.ratePerSecond > 0) || !(options.burst >= 1)) {
      throw new RangeError(
        `rate limit needs ratePerSecond > 0 and burst >= 1, got ${options.ratePerSecond} and ${options.burst}`,
      );
    }
    if (!('facegateGcra' in redis)) {
      redis.defineCommand('facegateGcra', { numberOfKeys: 1, lua: GCRA_SCRIPT });
    }
    this.#redis = redis as RedisWithGcra;
    this.#options = options;
    this.#intervalMs = 1000 / options.ratePerSecond;
  }

  /** Counts one request of `identity`. Rejects when Redis cannot be reached. */
  async consume(identity: string): Promise<RateLimitDecision> {
    const [allowed, waitMs] = await this.#redis.facegateGcra(
      `${this.#options.prefix}:ratelimit:${identity}`,
      this.#intervalMs,
      this.#options.burst,
    );
    return { allowed: allowed === 1, retryAfterMs: allowed === 1 ? 0 : waitMs };
  }
}
