import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import { decodeEmbedding, encodeEmbedding } from '../src/index.js';
import { bytesOf, makeEmbedding } from './helpers.js';

function isFaceGateError(code: string) {
  return (error: unknown) => error instanceof FaceGateError && error.code === code;
}

test('encode then decode returns the same bits', () => {
  const embedding = makeEmbedding(7, 512);

  const decoded = decodeEmbedding(encodeEmbedding(embedding, 512), 512);

  assert.deepEqual(bytesOf(decoded), bytesOf(embedding));
});

test('encodeEmbedding writes little-endian float32', () => {
  const bytes = encodeEmbedding(Float32Array.of(1, -2, 0.5));

  assert.equal(bytes.toString('hex'), '0000803f000000c00000003f');
});

test('decodeEmbedding copies from an unaligned buffer', () => {
  const encoded = encodeEmbedding(Float32Array.of(1.25, -7));
  const unaligned = Buffer.concat([Buffer.from([0xff]), encoded]).subarray(1);

  const decoded = decodeEmbedding(unaligned, 2);
  unaligned.fill(0);

  assert.deepEqual([...decoded], [1.25, -7]);
});

test('encodeEmbedding rejects a dimension mismatch', () => {
  assert.throws(
    () => encodeEmbedding(new Float32Array(512), 128),
    (error: unknown) => {
      assert.ok(error instanceof FaceGateError);
      assert.equal(error.code, 'MODEL_MISMATCH');
      assert.match(error.message, /512 values, expected 128/);
      return true;
    },
  );
});

test('encodeEmbedding rejects empty and non-finite input', () => {
  assert.throws(() => encodeEmbedding(new Float32Array(0)), isFaceGateError('INVALID_REQUEST'));
  assert.throws(
    () => encodeEmbedding(Float32Array.of(0, Number.NaN)),
    isFaceGateError('INVALID_REQUEST'),
  );
  assert.throws(
    () => encodeEmbedding(Float32Array.of(Number.NEGATIVE_INFINITY)),
    isFaceGateError('INVALID_REQUEST'),
  );
  assert.throws(
    () => encodeEmbedding([1, 2] as unknown as Float32Array),
    isFaceGateError('INVALID_REQUEST'),
  );
});

test('decodeEmbedding rejects a byte length that does not match dim', () => {
  assert.throws(
    () => decodeEmbedding(Buffer.alloc(12), 4),
    (error: unknown) => {
      assert.ok(error instanceof FaceGateError);
      assert.equal(error.code, 'INTERNAL');
      assert.match(error.message, /12 bytes, expected 16/);
      return true;
    },
  );
  assert.throws(() => decodeEmbedding(Buffer.alloc(0), 0), isFaceGateError('INTERNAL'));
});
