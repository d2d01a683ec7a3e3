// The stream endpoint in this process on a loopback HTTP server, with a fake
// dispatcher in place of the queues and workers, so timing-dependent behaviour
// (heartbeats, slow clients, shutdown, fairness) runs fast and deterministically.
import assert from 'node:assert/strict';
import { type Server, createServer } from 'node:http';
import { afterEach, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import type { DetectResult } from '@facegate/contracts';
import { FaceGateError } from '@facegate/errors';
import { createLogger } from '@facegate/logger';

import type { FrameDispatcher } from '../src/stream/connection.js';
import type { StreamOptions } from '../src/stream/options.js';
import { STREAM_PATH, StreamServer } from '../src/stream/server.js';
import { TestStreamClient } from './stream-client.js';

/** Enough for the gateway's format check; the fake dispatcher never decodes it. */
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46]);

const OPTIONS: StreamOptions = {
  maxInFlightPerStream: 1,
  maxInFlightTotal: 8,
  maxBufferedBytes: 1024 * 1024,
  slowClientGraceMs: 5000,
  heartbeatIntervalMs: 15_000,
  maxPayloadBytes: 64 * 1024,
  maxConnections: 8,
  maxCandidates: 5,
};

interface DispatchedJob {
  kind: string;
  requestId: string;
  body: any;
}

/** Resolves every job after `latencyMs` with a detection of `faces` faces, and records each job. */
class FakeDispatcher {
  readonly jobs: DispatchedJob[] = [];
  running = 0;
  maxRunning = 0;
  latencyMs = 5;
  faces = 1;
  failWith: FaceGateError | undefined;

  readonly dispatcher: FrameDispatcher = {
    request: async (kind, requestId, _images, body) => {
      this.jobs.push({ kind, requestId, body });
      this.running += 1;
      this.maxRunning = Math.max(this.maxRunning, this.running);
      try {
        await delay(this.latencyMs);
        if (this.failWith) throw this.failWith;
        return this.result();
      } finally {
        this.running -= 1;
      }
    },
  };

  result(): DetectResult {
    const face = {
      box: { x: 10, y: 20, width: 30, height: 40 },
      score: 0.9,
      landmarks: [
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
        [9, 10],
      ] as [number, number][],
    };
    return {
      image: { width: 640, height: 480 },
      faces: Array.from({ length: this.faces }, () => face),
      timings: { detectMs: this.latencyMs },
    };
  }
}

interface Harness {
  url: string;
  fake: FakeDispatcher;
  streams: StreamServer;
  server: Server;
}

const cleanups: (() => Promise<void>)[] = [];

async function startHarness(options: Partial<StreamOptions> = {}): Promise<Harness> {
  const fake = new FakeDispatcher();
  const server = createServer((_request, response) => response.writeHead(404).end());
  const streams = new StreamServer(server, {
    dispatcher: fake.dispatcher,
    logger: createLogger('stream-test', 'silent'),
    maxImageBytes: 32 * 1024,
    options: { ...OPTIONS, ...options },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  cleanups.push(async () => {
    await streams.close();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `ws://127.0.0.1:${port}${STREAM_PATH}`, fake, streams, server };
}

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe('stream endpoint with a fake dispatcher', () => {
  test('result carries the envelope, the REST shape and timings', async () => {
    const { url, fake } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.send({ type: 'config', mode: 'detect', min_score: 0.5, camera_id: 'door-2' });
    client.sendFrame(JPEG, { frame_id: 'f-1', timestamp: 1234 });
    const result = await client.waitFor((message) => message.type === 'result');

    assert.equal(result.frame_id, 'f-1');
    assert.equal(result.timestamp, 1234);
    assert.equal(result.camera_id, 'door-2');
    assert.equal(result.mode, 'detect');
    assert.equal(result.dropped, 0);
    assert.deepEqual(result.image, { width: 640, height: 480 });
    assert.deepEqual(result.faces, fake.result().faces);
    assert.equal(result.timings.detectMs, 5);
    assert.equal(typeof result.timings.streamWaitMs, 'number');
    assert.ok(
      result.timings.gatewayMs > result.timings.streamWaitMs,
      JSON.stringify(result.timings),
    );
    assert.equal(fake.jobs[0]!.kind, 'detect');
    assert.deepEqual(fake.jobs[0]!.body, { params: { minScore: 0.5 } });
  });

  test('recognize frames ask the matcher without waiting for a sequence', async () => {
    const { url, fake } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.send({ type: 'config', mode: 'recognize', top_k: 4, threshold: 0.5 });
    await client.request(JPEG, 1);

    assert.equal(fake.jobs[0]!.kind, 'recognize');
    assert.deepEqual(fake.jobs[0]!.body, {
      params: {},
      match: { topK: 4, threshold: 0.5, minSeq: 0 },
    });
  });

  test('server numbers frames without a frame message', async () => {
    const { url } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.send({ type: 'config', mode: 'detect' });
    client.sendFrame(JPEG);
    const first = await client.waitFor((message) => message.type === 'result');
    client.sendFrame(JPEG);
    const second = await client.waitFor((message) => message.frame_id === 2);

    assert.equal(first.frame_id, 1);
    assert.equal(second.type, 'result');
  });

  test('frame before any config gets an error', async () => {
    const { url } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.sendFrame(JPEG);
    const error = await client.waitFor((message) => message.type === 'error');

    assert.equal(error.frame_id, 1);
    assert.equal(error.error.code, 'INVALID_REQUEST');
    assert.match(error.error.message, /before any config message/);
    assert.ok(client.open);
  });

  test('auth message without keys is acknowledged', async () => {
    const { url } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.send({ type: 'auth', api_key: 'any-key-at-all-000000' });
    const reply = await client.waitFor((message) => message.type === 'authenticated');

    assert.equal(reply.key_id, null);
    assert.ok(client.open);
  });

  test('top_k above MAX_CANDIDATES is rejected', async () => {
    const { url } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.send({ type: 'config', mode: 'recognize', top_k: 6 });
    const error = await client.waitFor((message) => message.type === 'error');

    assert.equal(error.error.code, 'INVALID_REQUEST');
    assert.match(error.error.message, /'top_k' is 6; the limit is 5/);
    assert.ok(client.open);
  });

  test('failed job becomes an error for that frame only', async () => {
    const { url, fake } = await startHarness();
    const client = await TestStreamClient.open(url);
    client.send({ type: 'config', mode: 'detect' });

    fake.failWith = new FaceGateError('QUEUE_FULL', '300 inference jobs are waiting (limit 256)');
    const failed = await client.request(JPEG, 1);
    fake.failWith = undefined;
    const next = await client.request(JPEG, 2);

    assert.equal(failed.type, 'error');
    assert.equal(failed.error.code, 'QUEUE_FULL');
    assert.equal(next.type, 'result');
    assert.equal(next.dropped, 0);
  });

  test('frame over the image size limit gets IMAGE_TOO_LARGE', async () => {
    const { url } = await startHarness();
    const client = await TestStreamClient.open(url);
    client.send({ type: 'config', mode: 'detect' });

    const tooLarge = Buffer.concat([JPEG, Buffer.alloc(40 * 1024)]);
    const error = await client.request(tooLarge, 1);

    assert.equal(error.error.code, 'IMAGE_TOO_LARGE');
    assert.ok(client.open);
  });

  test('streams take turns under the gateway-wide limit', async () => {
    const { url, fake } = await startHarness({ maxInFlightTotal: 2 });
    fake.latencyMs = 10;
    const clients = await Promise.all([1, 2, 3, 4].map(() => TestStreamClient.open(url)));
    for (const client of clients) client.send({ type: 'config', mode: 'detect' });

    // Every client sends frames far faster than the fake workers return results.
    for (let round = 0; round < 60; round += 1) {
      for (const client of clients) client.sendFrame(JPEG);
      await delay(5);
    }
    await delay(50);
    const counts = clients.map((client) => client.results().length);

    assert.equal(fake.maxRunning, 2);
    assert.ok(Math.min(...counts) >= 5, `results per stream: ${counts.join(', ')}`);
    assert.ok(
      Math.max(...counts) - Math.min(...counts) <= 2,
      `results per stream: ${counts.join(', ')}`,
    );
  });

  test('client that misses a pong is terminated', async () => {
    const { url, streams } = await startHarness({ heartbeatIntervalMs: 100 });
    const silent = await TestStreamClient.open(url, { autoPong: false });
    const healthy = await TestStreamClient.open(url);

    const closed = await silent.closed;
    await delay(150);

    assert.equal(closed.code, 1006);
    assert.equal(streams.stats.unresponsiveClientsTerminated, 1);
    assert.ok(healthy.open);
    assert.equal(streams.connectionCount, 1);
  });

  test('stalled client is closed with 1013 and the other is served', async () => {
    const { url, fake, streams } = await startHarness({
      maxBufferedBytes: 64 * 1024,
      slowClientGraceMs: 300,
    });
    // About 170 kB per result, so the loopback socket buffers fill within a few dozen results.
    fake.faces = 1000;
    fake.latencyMs = 2;
    const stalled = await TestStreamClient.open(url);
    const reader = await TestStreamClient.open(url);
    stalled.send({ type: 'config', mode: 'detect' });
    reader.send({ type: 'config', mode: 'detect' });
    await stalled.request(JPEG, 'warm-up');
    (stalled.ws as any)._socket.pause();

    const sending = setInterval(() => stalled.sendFrame(JPEG), 5);
    const deadline = Date.now() + 20_000;
    let frameId = 0;
    // The stalled client sees the close frame only once it reads again, so the
    // server's counter shows when the server decided to close it.
    while (streams.stats.slowClientsClosed === 0 && Date.now() < deadline) {
      frameId += 1;
      await reader.request(JPEG, frameId);
    }
    clearInterval(sending);
    const servedWhileStalled = reader.results().length;
    (stalled.ws as any)._socket.resume();
    const closed = await stalled.closed;
    const after = await reader.request(JPEG, 'after');

    assert.equal(streams.stats.slowClientsClosed, 1);
    assert.equal(closed.code, 1013);
    assert.match(closed.reason, /client too slow/);
    assert.ok(servedWhileStalled >= 5, `reader got ${servedWhileStalled} results`);
    assert.equal(after.type, 'result');
    assert.ok(streams.stats.framesDropped > 0);
  });

  test('shutdown closes streams with 1001 and rejects new ones', async () => {
    const { url, streams } = await startHarness();
    const client = await TestStreamClient.open(url);

    await streams.close();
    const closed = await client.closed;
    const late = await TestStreamClient.reject(url);

    assert.equal(closed.code, 1001);
    assert.equal(late.status, 503);
    assert.equal(late.body.error.code, 'NOT_READY');
  });

  test('upgrade on another path gets 404', async () => {
    const { url } = await startHarness();

    const response = await TestStreamClient.reject(url.replace(STREAM_PATH, '/api/v1/other'));

    assert.equal(response.status, 404);
    assert.equal(response.body.error.code, 'NOT_FOUND');
  });

  test('oversize message closes with 1009', async () => {
    const { url } = await startHarness();
    const client = await TestStreamClient.open(url);

    client.sendFrame(Buffer.alloc(OPTIONS.maxPayloadBytes + 1, 0xff));
    const closed = await client.closed;

    assert.equal(closed.code, 1009);
  });
});
