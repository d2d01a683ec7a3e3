import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';
import { createQueues, keyNames, readHeartbeats } from '@facegate/contracts';
import { Redis } from 'ioredis';

import { CuttableProxy } from '@facegate/testing';
import { Stack, TEST_REDIS_URL, call, freePort } from '@facegate/testing';

const faces = facesDir();
const skip = faces ? false : FACES_MISSING;
const photo = (path: string): Promise<Buffer> => readFile(join(faces!, path));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(250);
  }
}

describe('PostgreSQL and Redis outages', { skip, timeout: 240_000 }, () => {
  const stack = new Stack();
  const postgresProxy = new CuttableProxy(5432);
  const redisProxy = new CuttableProxy(6379);

  before(async () => {
    await postgresProxy.start();
    await redisProxy.start();
    const database = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
    database.port = String(postgresProxy.port);
    await stack.start({
      workers: 1,
      env: { DATABASE_URL: database.toString(), REDIS_URL: `redis://127.0.0.1:${redisProxy.port}` },
    });
  });

  after(async () => {
    await postgresProxy.restore().catch(() => undefined);
    await redisProxy.restore().catch(() => undefined);
    await stack.stopAll();
    await postgresProxy.cut();
    await redisProxy.cut();
  });

  test('PostgreSQL down: fast 503, ready says so, then recovers', async () => {
    await postgresProxy.cut();
    const started = Date.now();

    const created = await call(stack, 'POST', '/api/v1/visitors', {
      json: { name: 'during outage' },
    });
    const elapsedMs = Date.now() - started;
    const ready = await call(stack, 'GET', '/ready');

    assert.equal(created.status, 503, JSON.stringify(created.json));
    assert.equal(created.json.error.code, 'DEPENDENCY_UNAVAILABLE');
    assert.ok(elapsedMs < 8000, `took ${elapsedMs} ms`);
    assert.equal(ready.status, 503);
    assert.equal(ready.json.checks.postgres.ok, false);

    await postgresProxy.restore();
    const recovered = await eventually('visitor creation after PostgreSQL returns', async () => {
      const response = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'after outage' },
      });
      return response.status === 201 ? response : undefined;
    });
    assert.equal(recovered.json.name, 'after outage');
  });

  test('Redis down: fast 503, ready says so, then recovers', async () => {
    const image = await photo('edge/png/32bit.png');
    await redisProxy.cut();

    const detected = await call(stack, 'POST', '/api/v1/detect', { image });
    const ready = await call(stack, 'GET', '/ready');

    assert.equal(detected.status, 503, JSON.stringify(detected.json));
    assert.equal(detected.json.error.code, 'DEPENDENCY_UNAVAILABLE');
    assert.match(detected.json.error.message, /^Redis is unavailable/);
    assert.doesNotMatch(detected.json.error.message, /enableOfflineQueue|Stream/);
    assert.ok(detected.headers.get('retry-after'));
    assert.equal(ready.status, 503);
    assert.equal(ready.json.checks.redis.ok, false);

    await redisProxy.restore();
    const recovered = await eventually('detection after Redis returns', async () => {
      const response = await call(stack, 'POST', '/api/v1/detect', { image });
      return response.status === 200 ? response : undefined;
    });
    assert.equal(recovered.json.faces.length, 1);
  });
});

describe('backlog limit and deadline', { skip, timeout: 120_000 }, () => {
  const stack = new Stack();

  before(async () => {
    // A worker killed without warning counts as live until three heartbeat intervals pass.
    // With intervals of a minute that lasts the whole test, so the gateway still queues
    // jobs that no worker takes.
    await stack.start({
      workers: 1,
      env: { QUEUE_MAX_WAITING: '2', REQUEST_TIMEOUT_MS: '2000', HEARTBEAT_INTERVAL_MS: '60000' },
    });
    await stack.stop('worker-1', 'SIGKILL');
  });

  after(async () => {
    await stack.stopAll();
  });

  test('dead worker: timeouts, then queue full', async () => {
    const image = await photo('edge/png/32bit.png');

    const first = await Promise.all(
      [1, 2, 3].map(() => call(stack, 'POST', '/api/v1/detect', { image })),
    );
    const later = await call(stack, 'POST', '/api/v1/detect', { image });

    const codes = first.map((response) => response.json.error.code).sort();
    assert.ok(codes.includes('TIMEOUT'), codes.join(','));
    for (const response of first.filter((r) => r.json.error.code === 'TIMEOUT'))
      assert.equal(response.status, 504);
    assert.equal(later.status, 503);
    assert.equal(later.json.error.code, 'QUEUE_FULL');
    assert.equal(later.headers.get('retry-after'), '1');
  });
});

describe('no worker or matcher running', { skip, timeout: 120_000 }, () => {
  const stack = new Stack();

  before(async () => {
    // Requests that were queued would wait this long, so a quick 503 shows they were not.
    await stack.start({ workers: 1, env: { REQUEST_TIMEOUT_MS: '20000' } });
  });

  after(async () => {
    await stack.stopAll();
  });

  test('rejected at once, nothing queued', async () => {
    const image = await photo('lfw/Tony_Blair/Tony_Blair_0001.jpg');
    const waitingJobs = async (): Promise<number> => {
      const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
      const queues = createQueues(redis, keyNames(stack.prefix));
      const waiting = await queues.inference.getWaitingCount();
      await queues.close();
      await redis.quit();
      return waiting;
    };

    // A worker that stops leaves the live set at once. The gateway may admit requests on
    // what it read up to a second earlier (STATE_MAX_AGE_MS in dispatcher.ts): wait that out.
    assert.equal(await stack.stop('worker-1'), 0);
    await sleep(1100);
    const noWorker = await Promise.all([
      call(stack, 'POST', '/api/v1/detect', { image }),
      call(stack, 'POST', '/api/v1/recognize', { image }),
      call(stack, 'POST', '/api/v1/verify', {
        json: { image_a: image.toString('base64'), image_b: image.toString('base64') },
      }),
    ]);
    const queuedWithoutWorker = await waitingJobs();

    stack.spawn('worker', 'worker-2');
    const detected = await eventually('a new worker answers', async () => {
      const response = await call(stack, 'POST', '/api/v1/detect', { image });
      return response.status === 200 ? response : undefined;
    });

    // Detection needs no matcher; recognition does.
    assert.equal(await stack.stop('matcher'), 0);
    await sleep(1100);
    const noMatcher = await call(stack, 'POST', '/api/v1/recognize', { image });
    const detectedWithoutMatcher = await call(stack, 'POST', '/api/v1/detect', { image });
    const queuedWithoutMatcher = await waitingJobs();

    stack.spawn('matcher');
    const recognized = await eventually('a new matcher answers', async () => {
      const response = await call(stack, 'POST', '/api/v1/recognize', { image });
      return response.status === 200 ? response : undefined;
    });

    for (const response of noWorker) {
      assert.equal(response.status, 503, JSON.stringify(response.json));
      assert.equal(response.json.error.code, 'NOT_READY');
      assert.match(response.json.error.message, /no inference worker/);
      assert.equal(response.headers.get('retry-after'), '1');
    }
    assert.equal(queuedWithoutWorker, 0);
    assert.ok(detected.json.faces.length >= 1);
    assert.equal(noMatcher.status, 503, JSON.stringify(noMatcher.json));
    assert.equal(noMatcher.json.error.code, 'NOT_READY');
    assert.match(noMatcher.json.error.message, /no matcher/);
    assert.equal(detectedWithoutMatcher.status, 200);
    assert.equal(queuedWithoutMatcher, 0);
    assert.ok(recognized.json.faces.length >= 1);
  });
});

describe('requests past their deadline', { skip, timeout: 120_000 }, () => {
  const stack = new Stack();

  before(async () => {
    // As above: the killed worker still counts as live, so jobs are queued and expire.
    await stack.start({
      workers: 1,
      env: {
        REQUEST_TIMEOUT_MS: '2000',
        HTTP_REQUEST_TIMEOUT_MS: '1500',
        HEARTBEAT_INTERVAL_MS: '60000',
      },
    });
    await stack.stop('worker-1', 'SIGKILL');
  });

  after(async () => {
    await stack.stopAll();
  });

  test('stalled upload gets 408 and its connection closes', async () => {
    const socket = connect(stack.port, '127.0.0.1');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(
      'POST /api/v1/recognize HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        'Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n',
    );
    socket.write(Buffer.alloc(100_000, 0xff));

    // The client sends nothing more; the gateway must give up on its own.
    const outcome = await Promise.race([
      closed.then(() => 'closed'),
      sleep(20_000).then(() => 'still open'),
    ]);
    socket.destroy();

    const answer = Buffer.concat(received).toString('latin1');
    assert.equal(outcome, 'closed');
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.equal(JSON.parse(answer.split('\r\n\r\n')[1]!).error.code, 'REQUEST_TIMEOUT');
  });

  test('enrolment answered 504 stores nothing later', async () => {
    const visitor = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Late' } }))
      .json;
    const image = await photo('lfw/Tony_Blair/Tony_Blair_0001.jpg');
    const facesPath = `/api/v1/visitors/${visitor.id}/faces`;
    // The photo shows a second face in the background.
    const enrolPath = `${facesPath}?multiple_faces=largest`;

    const timedOut = await call(stack, 'POST', enrolPath, { image });
    const metricsPort = await freePort();
    stack.spawn('worker', 'worker-2', metricsPort);
    // The new worker takes the queued job and skips it, since its deadline has passed.
    const expired = await eventually('the late job is skipped', async () => {
      const text = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
        .then((response) => response.text())
        .catch(() => '');
      const line = text
        .split('\n')
        .find(
          (entry) => entry.includes('queue="inference"') && entry.includes('outcome="expired"'),
        );
      return line ? Number(line.split(' ').pop()) : undefined;
    });
    const afterwards = await call(stack, 'GET', facesPath);
    const enrolled = await call(stack, 'POST', enrolPath, { image });
    const list = await call(stack, 'GET', facesPath);

    assert.equal(timedOut.status, 504);
    assert.equal(timedOut.json.error.code, 'TIMEOUT');
    assert.equal(expired, 1);
    assert.equal(afterwards.json.items.length, 0);
    assert.equal(enrolled.status, 201, JSON.stringify(enrolled.json));
    assert.equal(list.json.items.length, 1);
  });
});

describe('worker killed mid-job', { skip, timeout: 180_000 }, () => {
  const stack = new Stack();

  before(async () => {
    await stack.start({ workers: 1, env: { REQUEST_TIMEOUT_MS: '30000' } });
  });

  after(async () => {
    await stack.stopAll();
  });

  test('another worker finishes the enrolment exactly once', async () => {
    const visitor = (await call(stack, 'POST', '/api/v1/visitors', { json: { name: 'Beer' } }))
      .json;
    const image = await photo('edge/large/craft-beer.jpg');

    const pending = call(stack, 'POST', `/api/v1/visitors/${visitor.id}/faces`, { image });
    // The 6000x4000 photo takes a few hundred milliseconds to decode: kill the worker inside that.
    await sleep(150);
    await stack.stop('worker-1', 'SIGKILL');
    stack.spawn('worker', 'worker-2');
    const enrolled = await pending;
    const list = await call(stack, 'GET', `/api/v1/visitors/${visitor.id}/faces`);

    await sleep(1500); // two heartbeat intervals, so the counts are current
    const redis = new Redis(TEST_REDIS_URL);
    const workers = await readHeartbeats(redis, keyNames(stack.prefix), 'worker');
    await redis.quit();

    assert.equal(enrolled.status, 201, JSON.stringify(enrolled.json));
    assert.equal(list.json.items.length, 1);
    // Only the new worker is alive; it processed the job the killed one had taken.
    assert.equal(workers.length, 1);
    assert.ok(Number(workers[0]!.detail.processed) >= 1, JSON.stringify(workers[0]!.detail));
  });
});
