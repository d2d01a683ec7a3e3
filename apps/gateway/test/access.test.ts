import assert from 'node:assert/strict';
import { test } from 'node:test';

import { presentedKey } from '../src/access.js';

test('API key from either header', () => {
  assert.equal(presentedKey({ 'x-api-key': ' fgk_a ' }), 'fgk_a');
  assert.equal(presentedKey({ authorization: 'Bearer fgk_a' }), 'fgk_a');
  assert.equal(presentedKey({ 'x-api-key': 'fgk_a', authorization: 'Bearer fgk_a' }), 'fgk_a');
  assert.equal(presentedKey({}), undefined);
});

test('API key headers that disagree are invalid', () => {
  assert.equal(presentedKey({ 'x-api-key': 'fgk_a', authorization: 'Bearer fgk_b' }), '');
  assert.equal(presentedKey({ authorization: 'Basic abc' }), '');
});

test('X-API-Key beside a proxy Basic header', () => {
  assert.equal(presentedKey({ 'x-api-key': 'fgk_a', authorization: 'Basic abc' }), 'fgk_a');
});
