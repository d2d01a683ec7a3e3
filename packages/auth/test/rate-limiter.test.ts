import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';

import { Redis } from 'ioredis';

import { RateLimiter } from '../src/index.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test-rate-${randomBytes(6).toString('hex')}`;
// Two connections stand for two gateway instances sharing one Redis.
const first = new Redis(REDIS_URL);
const second = new Redis(REDIS_URL);

after(async () => {
  const keys = await first.keys(`${prefix}:*`);
  if (keys.length > 0) await first.del(...keys);
  await Promise.all([first.quit(), second.quit()]);
});

test('allows the burst, then rejects with a wait', async () => {
  const limiter = new RateLimiter(first, { ratePerSecond: 2, burst: 5, prefix });

  const decisions = [];
  for (let i = 0; i < 7; i += 1) decisions.push(await limiter.consume('key-burst'));

  assert.deepEqual(
    decisions.map((decision) => decision.allowed),
    [true, true, true, true, true, false, false],
  );
  assert.equal(decisions[0]!.retryAfterMs, 0);
  assert.ok(decisions[5]!.retryAfterMs > 0);
  assert.ok(decisions[5]!.retryAfterMs <= 500);
});

test('refills at the sustained rate', async () => {
  const limiter = new RateLimiter(first, { ratePerSecond: 20, burst: 1, prefix });

  const firstCall = await limiter.consume('key-refill');
  const rejected = await limiter.consume('key-refill');
  await new Promise((resolve) => setTimeout(resolve, rejected.retryAfterMs + 5));
  const later = await limiter.consume('key-refill');

  assert.equal(firstCall.allowed, true);
  assert.equal(rejected.allowed, false);
  assert.equal(later.allowed, true);
});

test('two limiters on two connections share one budget', async () => {
  const options = { ratePerSecond: 1, burst: 4, prefix };
  const limiters = [new RateLimiter(first, options), new RateLimiter(second, options)];

  const allowed: boolean[] = [];
  for (let i = 0; i < 8; i += 1)
    allowed.push((await limiters[i % 2]!.consume('key-shared')).allowed);

  assert.equal(allowed.filter(Boolean).length, 4);
});

test('keys are counted separately', async () => {
  const limiter = new RateLimiter(first, { ratePerSecond: 1, burst: 1, prefix });

  const a = await limiter.consume('key-a');
  const b = await limiter.consume('key-b');

  assert.equal(a.allowed, true);
  assert.equal(b.allowed, true);
});

test('works again after Redis lost its scripts', async () => {
  const limiter = new RateLimiter(first, { ratePerSecond: 100, burst: 10, prefix });
  await limiter.consume('key-flush');

  // A Redis restart empties the script cache; the next call must load the script again.
  await first.script('FLUSH');
  const decision = await limiter.consume('key-flush');

  assert.equal(decision.allowed, true);
});

test('rejects, not hangs, while Redis is unreachable', async () => {
  const unreachable = new Redis('redis://127.0.0.1:1', {
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    lazyConnect: true,
  });
  const limiter = new RateLimiter(unreachable, { ratePerSecond: 1, burst: 1, prefix });

  await assert.rejects(limiter.consume('key-down'));
  unreachable.disconnect();
});
