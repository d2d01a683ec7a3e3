import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';

import { type Database, createDatabase, insertApiKey, migrate, revokeApiKey } from '@facegate/db';
import { createLogger } from '@facegate/logger';

import { KeyRing, generateApiKey, parseApiKeysVariable } from '../src/index.js';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const logger = createLogger('test', 'silent');
let db: Database;

before(async () => {
  db = createDatabase({ url: DATABASE_URL, schema: `test_keys_${randomBytes(6).toString('hex')}` });
  await migrate(db);
});

after(async () => {
  await db.sql`drop schema if exists ${db.sql(db.schema)} cascade`;
  await db.close();
});

async function createKey(scopes: ('recognize' | 'enrol' | 'admin')[]) {
  const generated = generateApiKey();
  await insertApiKey(
    db,
    { id: generated.id, name: 'test', keySha256: generated.sha256, scopes, createdBy: 'cli' },
    { keyId: 'cli' },
  );
  return generated;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Date.now() - started;
}

test('without keys the ring is open and grants every scope', async () => {
  const ring = new KeyRing({ envKeys: [], logger });

  await ring.start();
  const principal = ring.authenticate(undefined);

  assert.equal(ring.mode, 'open');
  assert.ok(principal);
  assert.equal(principal.keyId, null);
  assert.deepEqual([...principal.scopes].sort(), ['admin', 'enrol', 'recognize']);
});

test('AUTH_REQUIRED without keys rejects everyone', async () => {
  const ring = new KeyRing({ envKeys: [], logger, required: true });

  await ring.start();

  assert.equal(ring.mode, 'keys');
  assert.equal(ring.authenticate(undefined), null);
  assert.equal(ring.authenticate('anything-at-all-12345'), null);
});

test('environment keys authenticate with their scopes', async () => {
  const envKeys = parseApiKeysVariable('lobby-kiosk-key-0001:recognize');
  const ring = new KeyRing({ envKeys, logger });

  await ring.start();

  assert.equal(ring.mode, 'keys');
  assert.equal(ring.authenticate('lobby-kiosk-key-0001')?.keyId, 'env-1');
  assert.deepEqual([...ring.authenticate('lobby-kiosk-key-0001')!.scopes], ['recognize']);
  assert.equal(ring.authenticate('lobby-kiosk-key-0002'), null);
  assert.equal(ring.authenticate(undefined), null);
});

test('a revoked key stops working on every ring within a second', async () => {
  const key = await createKey(['enrol']);
  // Two rings stand for two gateways, each with its own LISTEN connection.
  const other = createDatabase({ url: DATABASE_URL, schema: db.schema, maxConnections: 2 });
  const rings = [
    new KeyRing({ envKeys: [], db, logger, reloadIntervalMs: 60_000 }),
    new KeyRing({ envKeys: [], db: other, logger, reloadIntervalMs: 60_000 }),
  ];
  await Promise.all(rings.map((ring) => ring.start()));
  const revokedEvents: string[][] = [];
  rings[1]!.on('revoked', (ids) => revokedEvents.push([...ids]));

  assert.equal(rings[0]!.authenticate(key.key)?.keyId, key.id);
  assert.equal(rings[1]!.authenticate(key.key)?.keyId, key.id);
  await revokeApiKey(db, key.id, { keyId: 'cli' });
  const elapsedMs = await waitFor(
    () => rings.every((ring) => ring.authenticate(key.key) === null),
    1000,
  );

  assert.ok(elapsedMs < 1000, `took ${elapsedMs} ms`);
  assert.deepEqual(revokedEvents, [[key.id]]);
  await Promise.all(rings.map((ring) => ring.stop()));
  await other.close();
});

test('revoking the last key does not open the service', async () => {
  const key = await createKey(['admin']);
  const ring = new KeyRing({ envKeys: [], db, logger, reloadIntervalMs: 60_000 });
  await ring.start();
  const before = [...ring.keyIds];

  await revokeApiKey(db, key.id, { keyId: 'cli' });
  await ring.reload();

  assert.deepEqual(before, [key.id]);
  assert.deepEqual(ring.keyIds, []);
  assert.equal(ring.mode, 'keys');
  assert.equal(ring.authenticate(undefined), null);
  await ring.stop();
});
