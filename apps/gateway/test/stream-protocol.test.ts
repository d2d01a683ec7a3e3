import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConfigError } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';

import { readStreamOptions } from '../src/stream/options.js';
import { MAX_CONTROL_MESSAGE_BYTES, parseClientMessage } from '../src/stream/protocol.js';

function rejection(text: string): FaceGateError {
  try {
    parseClientMessage(text);
  } catch (error) {
    assert.ok(error instanceof FaceGateError, `not a FaceGateError: ${String(error)}`);
    return error;
  }
  assert.fail(`accepted ${text}`);
}

describe('stream control messages', () => {
  test('recognize config maps to job parameters', () => {
    const message = parseClientMessage(
      JSON.stringify({
        type: 'config',
        mode: 'recognize',
        min_score: 0.6,
        limit: 5,
        top_k: 3,
        threshold: 0.4,
        camera_id: 'lobby-1',
      }),
    );

    assert.deepEqual(message, {
      type: 'config',
      settings: {
        mode: 'recognize',
        cameraId: 'lobby-1',
        params: { minScore: 0.6, maxFaces: 5 },
        match: { topK: 3, threshold: 0.4 },
      },
    });
  });

  test('recognize config defaults top_k to 1', () => {
    const message = parseClientMessage('{"type":"config","mode":"recognize"}');

    assert.deepEqual(message, {
      type: 'config',
      settings: { mode: 'recognize', params: {}, match: { topK: 1 } },
    });
  });

  test('detect config takes no match parameters', () => {
    const plain = parseClientMessage('{"type":"config","mode":"detect","min_score":0.05}');
    const withTopK = rejection('{"type":"config","mode":"detect","top_k":2}');

    assert.deepEqual(plain, {
      type: 'config',
      settings: { mode: 'detect', params: { minScore: 0.05 } },
    });
    assert.equal(withTopK.code, 'INVALID_REQUEST');
    assert.match(withTopK.message, /top_k/);
  });

  test('frame message carries id and timestamp', () => {
    const numbered = parseClientMessage('{"type":"frame","frame_id":42,"timestamp":1700000000123}');
    const named = parseClientMessage('{"type":"frame","frame_id":"cam-1/77"}');

    assert.deepEqual(numbered, {
      type: 'frame',
      header: { frameId: 42, timestamp: 1700000000123 },
    });
    assert.deepEqual(named, { type: 'frame', header: { frameId: 'cam-1/77' } });
  });

  const INVALID: [string, string, RegExp][] = [
    ['not JSON', '{"type":', /not valid JSON/],
    ['a JSON array', '[1,2]', /JSON object/],
    ['no type', '{"mode":"detect"}', /unknown message type null/],
    ['unknown type', '{"type":"hello"}', /unknown message type "hello"/],
    ['unknown mode', '{"type":"config","mode":"verify"}', /mode/],
    ['missing mode', '{"type":"config"}', /mode/],
    ['min_score too high', '{"type":"config","mode":"detect","min_score":7}', /min_score/],
    ['min_score too low', '{"type":"config","mode":"detect","min_score":0.01}', /min_score/],
    ['min_score as text', '{"type":"config","mode":"detect","min_score":"0.5"}', /min_score/],
    ['top_k zero', '{"type":"config","mode":"recognize","top_k":0}', /top_k/],
    ['top_k above 20', '{"type":"config","mode":"recognize","top_k":21}', /top_k/],
    ['top_k fractional', '{"type":"config","mode":"recognize","top_k":1.5}', /top_k/],
    ['threshold too low', '{"type":"config","mode":"recognize","threshold":0.1}', /threshold/],
    ['threshold too high', '{"type":"config","mode":"recognize","threshold":0.99}', /threshold/],
    ['unknown key', '{"type":"config","mode":"detect","fps":10}', /fps/],
    ['camera id with spaces', '{"type":"config","mode":"detect","camera_id":"a b"}', /camera_id/],
    ['negative frame id', '{"type":"frame","frame_id":-1}', /frame_id/],
    ['empty frame id', '{"type":"frame","frame_id":""}', /frame_id/],
    ['frame with unknown key', '{"type":"frame","size":3}', /size/],
  ];

  for (const [name, text, pattern] of INVALID) {
    test(`rejects ${name}`, () => {
      const error = rejection(text);

      assert.equal(error.code, 'INVALID_REQUEST');
      assert.match(error.message, pattern);
    });
  }

  test('rejects an oversize text message', () => {
    const text = JSON.stringify({
      type: 'config',
      mode: 'detect',
      camera_id: 'x'.repeat(MAX_CONTROL_MESSAGE_BYTES),
    });

    const error = rejection(text);

    assert.equal(error.code, 'INVALID_REQUEST');
    assert.match(error.message, /limited to 4096 bytes/);
  });
});

describe('stream options', () => {
  test('defaults apply when nothing is set', () => {
    const options = readStreamOptions({}, { maxImageBytes: 10 * 1024 * 1024 });

    assert.deepEqual(options, {
      maxInFlightPerStream: 1,
      maxInFlightTotal: 8,
      maxBufferedBytes: 1024 * 1024,
      slowClientGraceMs: 5000,
      heartbeatIntervalMs: 15_000,
      maxPayloadBytes: 10 * 1024 * 1024,
      maxConnections: 64,
      maxCandidates: 20,
    });
  });

  test('variables override the defaults', () => {
    const options = readStreamOptions(
      {
        STREAM_MAX_IN_FLIGHT: '2',
        STREAM_MAX_IN_FLIGHT_TOTAL: '16',
        STREAM_MAX_PAYLOAD_BYTES: '2048',
        STREAM_MAX_CONNECTIONS: '',
      },
      { maxImageBytes: 1024 * 1024 },
    );

    assert.equal(options.maxInFlightPerStream, 2);
    assert.equal(options.maxInFlightTotal, 16);
    assert.equal(options.maxPayloadBytes, 2048);
    assert.equal(options.maxConnections, 64);
  });

  test('every invalid variable is reported together', () => {
    const read = () =>
      readStreamOptions(
        {
          STREAM_MAX_IN_FLIGHT: '0',
          STREAM_MAX_CONNECTIONS: 'many',
          STREAM_MAX_BUFFERED_BYTES: '1',
        },
        { maxImageBytes: 1024 },
      );

    assert.throws(read, (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 3);
      assert.match(error.message, /STREAM_MAX_IN_FLIGHT="0"/);
      assert.match(error.message, /STREAM_MAX_CONNECTIONS="many"/);
      assert.match(error.message, /STREAM_MAX_BUFFERED_BYTES="1"/);
      return true;
    });
  });
});
