import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import {
  generateApiKey,
  hashApiKey,
  keyIdOf,
  parseApiKeysVariable,
  parseScopes,
} from '../src/index.js';

const KEY_A = 'kiosk-lobby-0123456789';
const KEY_B = 'operator.desk_ABCDEFGHIJ';

test('API_KEYS parses keys, scopes and positional ids', () => {
  const keys = parseApiKeysVariable(`${KEY_A}:recognize, ${KEY_B}:enrol+admin`);

  assert.equal(keys.length, 2);
  assert.equal(keys[0]!.id, 'env-1');
  assert.deepEqual(keys[0]!.scopes, ['recognize']);
  assert.deepEqual(keys[0]!.sha256, hashApiKey(KEY_A));
  assert.equal(keys[1]!.id, 'env-2');
  assert.deepEqual(keys[1]!.scopes, ['enrol', 'admin']);
});

test('API_KEYS unset or empty means no keys', () => {
  assert.deepEqual(parseApiKeysVariable(undefined), []);
  assert.deepEqual(parseApiKeysVariable('  '), []);
});

test('API_KEYS errors list every entry and never the key', () => {
  const text = `${KEY_A}:recognize,short:admin,${KEY_B}:owner,${KEY_A}:enrol,no-scope-here-0000`;

  let error: unknown;
  try {
    parseApiKeysVariable(text);
  } catch (caught) {
    error = caught;
  }

  assert.ok(error instanceof FaceGateError);
  assert.equal(error.code, 'CONFIG_INVALID');
  const problems = error.details?.problems as string[];
  assert.equal(problems.length, 4, problems.join(' | '));
  assert.match(problems[0]!, /entry 2 must have at least 16 characters/);
  assert.match(problems[1]!, /entry 3: unknown scope "owner"/);
  assert.match(problems[2]!, /entry 4 repeats an earlier entry/);
  assert.match(problems[3]!, /entry 5 is not <key>:<scope>/);
  for (const secret of [KEY_A, KEY_B, 'short', 'no-scope-here-0000'])
    assert.ok(!error.message.includes(secret), `the message shows ${secret}`);
});

test('generated keys carry their id and differ', () => {
  const first = generateApiKey();
  const second = generateApiKey();

  assert.match(first.key, /^fgk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
  assert.equal(keyIdOf(first.key), first.id);
  assert.notEqual(first.key, second.key);
  assert.notEqual(first.id, second.id);
  assert.deepEqual(first.sha256, hashApiKey(first.key));
  assert.equal(keyIdOf(KEY_A), null);
});

test('scopes reject unknown names and drop repeats', () => {
  assert.deepEqual(parseScopes('admin+admin+enrol'), ['admin', 'enrol']);
  assert.throws(() => parseScopes('recognize+root'), /unknown scope "root"/);
  assert.throws(() => parseScopes(''), /unknown scope ""/);
});
