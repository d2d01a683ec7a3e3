// Request validation messages: each names the parameter and what was wrong with
// the value as the client sent it.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FaceGateError } from '@facegate/errors';
import { z } from 'zod';

import { newBatchBody } from '../src/batches.js';
import {
  enrolQuery,
  faceIdParams,
  newVisitorBody,
  parse,
  recognizeQuery,
  verifyQuery,
} from '../src/schemas.js';

function messageOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof FaceGateError);
    assert.equal(error.code, 'INVALID_REQUEST');
    return error.message;
  }
  assert.fail('expected INVALID_REQUEST');
}

test('repeated query parameter', () => {
  const message = messageOf(() => parse(recognizeQuery, { limit: ['1', '2'] }, 'query'));

  assert.equal(message, "query 'limit': is given more than once");
});

test('array body or field is not called repeated', () => {
  assert.equal(
    messageOf(() => parse(newVisitorBody, [], 'body')),
    'body: must be a JSON object, got []',
  );
  assert.equal(
    messageOf(() => parse(newVisitorBody, { name: ['a'] }, 'body')),
    `body 'name': must be of type string, got ["a"]`,
  );
});

test('non-numeric number parameter', () => {
  const message = messageOf(() => parse(recognizeQuery, { min_score: 'abc' }, 'query'));

  assert.equal(message, "query 'min_score': must be a plain decimal number, got 'abc'");
});

test('numbers are read from decimal text only', () => {
  for (const text of ['0x3', ' 3 ', '', '3px', 'Infinity', '1e400']) {
    assert.equal(
      messageOf(() => parse(recognizeQuery, { top_k: text }, 'query')),
      `query 'top_k': must be a plain decimal number, got '${text}'`,
      text,
    );
  }
  assert.equal(
    messageOf(() => parse(recognizeQuery, { top_k: '2.5' }, 'query')),
    "query 'top_k': must be an integer, got '2.5'",
  );
  assert.deepEqual(parse(recognizeQuery, { threshold: '.5', min_score: '5e-1' }, 'query'), {
    top_k: 1,
    threshold: 0.5,
    min_score: 0.5,
  });
  assert.equal(parse(recognizeQuery, { top_k: 4 }, 'query').top_k, 4);
});

test('face ids are digits only', () => {
  const id = '3f0e3f4e-8a53-4f7e-9a57-9c6c0a8b1e11';
  for (const faceId of ['1.0', '1e0', '0x1', ' 1', '9007199254740991']) {
    assert.equal(
      messageOf(() => parse(faceIdParams, { id, faceId }, 'path')),
      `path 'faceId': must be a face id: 1 to 15 digits, nothing else, got '${faceId}'`,
    );
  }
  assert.equal(parse(faceIdParams, { id, faceId: '12' }, 'path').faceId, 12);
});

test('out-of-range numbers', () => {
  assert.equal(
    messageOf(() => parse(recognizeQuery, { min_score: '7' }, 'query')),
    "query 'min_score': must be at most 1, got '7'",
  );
  assert.equal(
    messageOf(() => parse(recognizeQuery, { top_k: '0' }, 'query')),
    "query 'top_k': must be at least 1, got '0'",
  );
});

test('missing, empty or long field', () => {
  assert.equal(
    messageOf(() => parse(newVisitorBody, {}, 'body')),
    "body 'name': is required",
  );
  assert.equal(
    messageOf(() => parse(newVisitorBody, { name: '   ' }, 'body')),
    "body 'name': must not be empty",
  );
  assert.equal(
    messageOf(() => parse(newVisitorBody, { name: 'x'.repeat(201) }, 'body')),
    "body 'name': must be at most 200 characters long",
  );
});

test('malformed uuid shown shortened', () => {
  const message = messageOf(() =>
    parse(verifyQuery, { visitor_id: `not-a-uuid-${'z'.repeat(100)}` }, 'query'),
  );

  assert.match(message, /^query 'visitor_id': must be a valid uuid, got 'not-a-uuid-z+\.\.\.$/);
  assert.ok(message.length < 120, message);
});

test('several problems listed together', () => {
  const message = messageOf(() => parse(recognizeQuery, { min_score: 'abc', foo: '1' }, 'query'));

  assert.match(message, /unknown query parameter\(s\): foo/);
  assert.match(message, /query 'min_score': must be a plain decimal number, got 'abc'/);
});

test('missing or unknown choice in a batch source', () => {
  const table = { type: 'table', table: 'visitors', idColumn: 'id', nameColumn: 'name' };

  assert.equal(
    messageOf(() => parse(newBatchBody, { source: { ...table, imageColumn: 'photo' } }, 'body')),
    "body 'source.imageEncoding': is required: one of 'bytea', 'base64', 'path'",
  );
  assert.equal(
    messageOf(() => parse(newBatchBody, { source: {} }, 'body')),
    "body 'source.type': must be one of 'directory', 'manifest', 'table'",
  );
  assert.equal(
    messageOf(() => parse(newBatchBody, { source: { type: 'ftp', path: '/x' } }, 'body')),
    "body 'source.type': must be one of 'directory', 'manifest', 'table'",
  );
});

test("multiple-faces policy 'center' alias", () => {
  const source = { type: 'directory', path: '/photos' };

  assert.equal(parse(enrolQuery, { multiple_faces: 'center' }, 'query').multiple_faces, 'centre');
  assert.equal(parse(enrolQuery, {}, 'query').multiple_faces, 'strict');
  assert.equal(
    parse(newBatchBody, { source, multipleFaces: 'center' }, 'body').multipleFaces,
    'centre',
  );
  assert.equal(
    messageOf(() => parse(enrolQuery, { multiple_faces: 'middle' }, 'query')),
    "query 'multiple_faces': must be one of 'strict', 'largest', 'centre', got 'middle'",
  );
});

test('own pattern message and one problem per wrong type', () => {
  const schema = z
    .object({
      camera: z.string().regex(/^[a-z]+$/, 'must be lower-case letters'),
      tags: z.array(z.string()).max(3),
    })
    .strict();

  assert.equal(
    messageOf(() => parse(schema, { camera: 'A b', tags: [] }, 'body')),
    "body 'camera': must be lower-case letters, got 'A b'",
  );
  assert.equal(
    messageOf(() => parse(schema, { camera: 'ab', tags: 'admin' }, 'body')),
    "body 'tags': must be of type array, got 'admin'",
  );
  assert.equal(
    messageOf(() => parse(schema, { camera: 'ab', tags: ['a', 'b', 'c', 'd'] }, 'body')),
    `body 'tags': must list at most 3 items, got ["a","b","c","d"]`,
  );
});

test('union reports a problem once', () => {
  const frameId = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
  const schema = z.object({ id: z.union([frameId, z.string().max(5)]) });

  assert.equal(
    messageOf(() => parse(schema, { id: 1e300 }, 'frame')),
    "frame 'id': must be at most 9007199254740991, got 1e+300",
  );
});
