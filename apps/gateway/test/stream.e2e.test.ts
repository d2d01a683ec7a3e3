import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import { FACES_MISSING, facesDir } from '@facegate/config';
import { type CallResult, Stack, call } from '@facegate/testing';

import { TestStreamClient } from './stream-client.js';

const faces = facesDir();
const stack = new Stack();
const photo = (path: string): Promise<Buffer> => readFile(join(faces!, path));

const MAX_CONNECTIONS = 4;
const MAX_PAYLOAD_BYTES = 2 * 1024 * 1024;
const SLOW_CLIENT_LOG = 'stream client reads too slowly';

const streamUrl = (path = '/api/v1/stream'): string =>
  `${stack.url.replace('http://', 'ws://')}${path}`;

/** Opens a stream, retrying while the gateway still counts streams that were just closed. */
async function openStream(timeoutMs = 5000): Promise<TestStreamClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await TestStreamClient.open(streamUrl());
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await delay(50);
    }
  }
}

function gatewayLog(): string {
  return (stack.logs.get('gateway') ?? []).join('');
}

describe(
  'WebSocket streams on the running stack',
  { skip: faces ? false : FACES_MISSING, timeout: 240_000 },
  () => {
    let obamaId = '';

    before(async () => {
      await stack.start({
        workers: 1,
        env: {
          STREAM_MAX_CONNECTIONS: String(MAX_CONNECTIONS),
          STREAM_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
          STREAM_MAX_BUFFERED_BYTES: String(64 * 1024),
          STREAM_SLOW_CLIENT_GRACE_MS: '1000',
        },
      });
      const visitor = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'Obama', externalId: 'stream-obama' },
      });
      obamaId = visitor.json.id;
      for (const file of ['obama.jpg', 'obama2.jpg']) {
        const enrolled = await call(stack, 'POST', `/api/v1/visitors/${obamaId}/faces`, {
          image: await photo(`identity-small/face_recognition_knn/train/obama/${file}`),
        });
        assert.equal(enrolled.status, 201, JSON.stringify(enrolled.json));
      }
    });

    after(async () => {
      await stack.stopAll();
    });

    test('upgrade on another path gets 404', async () => {
      const response = await TestStreamClient.reject(streamUrl('/api/v1/streams'));

      assert.equal(response.status, 404);
      assert.equal(response.body.error.code, 'NOT_FOUND');
    });

    test('connection limit rejects the extra client', async () => {
      const clients = await Promise.all(
        Array.from({ length: MAX_CONNECTIONS }, () => TestStreamClient.open(streamUrl())),
      );

      const extra = await TestStreamClient.reject(streamUrl());
      await Promise.all(clients.map((client) => client.close()));
      const afterClose = await openStream();
      await afterClose.close();

      assert.equal(extra.status, 503);
      assert.equal(extra.body.error.code, 'TOO_MANY_STREAMS');
      assert.match(extra.body.error.message, /limit 4/);
      assert.ok(afterClose);
    });

    test('recognize frames give the same faces and names as REST', async () => {
      const files = [
        'identity-small/face_recognition_knn/test/obama1.jpg',
        'identity-small/face_recognition_knn/test/obama_and_biden.jpg',
        'identity-small/face_recognition_knn/test/kit_with_rose.jpg',
        'lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg',
      ];
      // REST first: it waits for the matcher to apply the enrolments, which a
      // stream does not (minSeq 0).
      const rest: CallResult[] = [];
      for (const file of files) {
        rest.push(
          await call(stack, 'POST', '/api/v1/recognize?top_k=3', { image: await photo(file) }),
        );
      }
      const client = await openStream();

      client.send({ type: 'config', mode: 'recognize', top_k: 3, camera_id: 'entrance-1' });
      const streamed: any[] = [];
      for (const file of files) streamed.push(await client.request(await photo(file), file));
      await client.close();

      files.forEach((file, index) => {
        const expected = rest[index]!;
        const actual = streamed[index]!;
        assert.equal(expected.status, 200, JSON.stringify(expected.json));
        assert.equal(actual.type, 'result', JSON.stringify(actual));
        assert.equal(actual.camera_id, 'entrance-1');
        assert.deepEqual(actual.image, expected.json.image, file);
        assert.deepEqual(actual.faces, expected.json.faces, file);
        assert.equal(actual.modelId, expected.json.modelId);
        assert.equal(actual.threshold, expected.json.threshold);
      });
      assert.equal(streamed[0].faces[0].match?.visitorId, obamaId);
      assert.equal(streamed[0].faces[0].match?.name, 'Obama');
      assert.equal(streamed[3].faces[0].match, null);
    });

    test('detect frames give the same faces as REST', async () => {
      const solvay = await photo('edge/multi_face/solvay.jpg');
      const couple = await photo('edge/multi_face/couple.jpg');
      const restSolvay = await call(stack, 'POST', '/api/v1/detect?min_score=0.8&limit=3', {
        image: solvay,
      });
      const restCouple = await call(stack, 'POST', '/api/v1/detect', { image: couple });
      const client = await openStream();

      client.send({ type: 'config', mode: 'detect', min_score: 0.8, limit: 3 });
      const streamedSolvay = await client.request(solvay, 'solvay');
      client.send({ type: 'config', mode: 'detect' });
      const streamedCouple = await client.request(couple, 'couple');
      await client.close();

      assert.equal(streamedSolvay.mode, 'detect');
      assert.equal(streamedSolvay.faces.length, 3);
      assert.deepEqual(streamedSolvay.faces, restSolvay.json.faces);
      assert.deepEqual(streamedCouple.faces, restCouple.json.faces);
      assert.deepEqual(streamedCouple.image, { width: 2280, height: 1588 });
    });

    test('burst of 100 frames is coalesced without backlog', async () => {
      const image = await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg');
      const client = await openStream();
      client.send({ type: 'config', mode: 'detect' });

      for (let i = 0; i < 100; i += 1) client.sendFrame(image);
      const last = await client.waitFor((message) => message.frame_id === 100);
      const results = client.results();
      const next = await client.request(image, 'next');
      await client.close();

      assert.equal(last.type, 'result');
      assert.ok(results.length < 50, `${results.length} results for 100 frames`);
      const accounted = results.reduce((sum, result) => sum + 1 + result.dropped, 0);
      assert.equal(accounted, 100);
      assert.equal(client.messages.filter((message) => message.type === 'error').length, 0);
      const ids = results.map((result) => result.frame_id);
      assert.deepEqual(
        ids,
        [...ids].sort((a, b) => a - b),
      );
      // Nothing was queued behind the last frame: the next result is for the next frame.
      assert.equal(client.messages.at(-1), next);
      assert.equal(client.messages.at(-2), last);
      assert.equal(next.dropped, 0);
    });

    test('bad frames get errors and the next frame works', async () => {
      const client = await openStream();
      client.send({ type: 'config', mode: 'recognize' });

      const text = await client.request(Buffer.from('not an image at all'), 'text');
      const empty = await client.request(Buffer.alloc(0), 'empty');
      const heic = await client.request(await photo('edge/odd_format/IMG_2682.heic'), 'heic');
      const truncated = await client.request(
        (await photo('edge/multi_face/couple.jpg')).subarray(0, 300_000),
        'truncated',
      );
      const good = await client.request(
        await photo('identity-small/face_recognition_knn/test/obama1.jpg'),
        'good',
      );
      await client.close();

      assert.equal(text.type, 'error');
      assert.equal(text.error.code, 'IMAGE_UNSUPPORTED_FORMAT');
      assert.equal(empty.error.code, 'IMAGE_EMPTY');
      assert.equal(heic.error.code, 'IMAGE_UNSUPPORTED_FORMAT');
      assert.match(heic.error.message, /HEIC/);
      assert.equal(truncated.error.code, 'IMAGE_CORRUPT');
      assert.equal(good.type, 'result', JSON.stringify(good));
      assert.equal(good.faces[0].match?.name, 'Obama');
      assert.equal(good.dropped, 0);
    });

    test('bad control messages get errors and the stream stays open', async () => {
      const client = await openStream();
      client.send({ type: 'config', mode: 'detect' });
      const invalid = [
        '{"type": "config", "mode": ',
        JSON.stringify({ type: 'config', mode: 'detect', min_score: 7 }),
        JSON.stringify({ type: 'config', mode: 'recognize', top_k: 0 }),
        JSON.stringify({ type: 'config', mode: 'recognize', threshold: 0.1 }),
        JSON.stringify({ type: 'config', mode: 'classify' }),
        JSON.stringify({ type: 'subscribe' }),
      ];

      for (const text of invalid) client.ws.send(text);
      await client.waitFor(() => client.messages.length >= invalid.length);
      const errors = [...client.messages];
      const result = await client.request(await photo('edge/multi_face/couple.jpg'), 'after');
      await client.close();

      assert.equal(errors.length, invalid.length);
      for (const error of errors) {
        assert.equal(error.type, 'error');
        assert.equal(error.frame_id, undefined);
        assert.equal(error.error.code, 'INVALID_REQUEST');
      }
      assert.match(errors[1].error.message, /min_score/);
      assert.match(errors[2].error.message, /top_k/);
      assert.match(errors[3].error.message, /threshold/);
      // The last valid config still applies.
      assert.equal(result.type, 'result');
      assert.equal(result.mode, 'detect');
      assert.equal(result.faces.length, 2);
    });

    test('oversize message closes with 1009', async () => {
      const client = await openStream();
      client.send({ type: 'config', mode: 'detect' });

      client.sendFrame(Buffer.alloc(MAX_PAYLOAD_BYTES + 1024, 0xff));
      const closed = await client.closed;

      assert.equal(closed.code, 1009);
    });

    test('stalled client is closed with 1013 while another is served', async () => {
      // About 38 kB per result (hundreds of low-score detections), so the ~4 MB
      // that loopback sockets buffer fill in a few seconds.
      const heavy = await photo('edge/multi_face/solvay.jpg');
      const light = await photo('lfw/Aaron_Peirsol/Aaron_Peirsol_0002.jpg');
      const stalled = await openStream();
      const reader = await openStream();
      stalled.send({ type: 'config', mode: 'detect', min_score: 0.05, limit: 1000 });
      reader.send({ type: 'config', mode: 'recognize', camera_id: 'reader' });
      await stalled.request(heavy, 'warm-up');
      (stalled.ws as any)._socket.pause();

      const sending = setInterval(() => stalled.sendFrame(heavy), 20);
      const deadline = Date.now() + 60_000;
      let served = 0;
      // The stalled client sees the close frame only once it reads again, so
      // the gateway's log shows when the gateway decided to close it.
      while (!gatewayLog().includes(SLOW_CLIENT_LOG) && Date.now() < deadline) {
        const result = await reader.request(light, `r${served}`);
        assert.equal(result.type, 'result', JSON.stringify(result));
        served += 1;
      }
      clearInterval(sending);
      (stalled.ws as any)._socket.resume();
      const closed = await stalled.closed;
      const afterClose = await reader.request(light, 'after');
      await reader.close();

      assert.ok(gatewayLog().includes(SLOW_CLIENT_LOG), 'the gateway never closed the client');
      assert.equal(closed.code, 1013);
      assert.match(closed.reason, /client too slow/);
      assert.ok(served >= 5, `the other client got ${served} results meanwhile`);
      assert.equal(afterClose.type, 'result');
    });

    test('gateway shutdown closes streams with 1001', async () => {
      const client = await openStream();

      const exitCode = await stack.stop('gateway');
      const closed = await client.closed;

      assert.equal(closed.code, 1001);
      assert.equal(exitCode, 0);
    });
  },
);
