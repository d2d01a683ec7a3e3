import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import {
  type Database,
  MIGRATIONS,
  createBatch,
  createDatabase,
  createVisitor,
  eraseFace,
  eraseVisitor,
  grantServiceAccess,
  insertApiKey,
  insertFace,
  listApiKeys,
  listAudit,
  migrate,
  pruneMatchLog,
  recordMatches,
  revokeApiKey,
  storeItemFace,
  upsertBatchItems,
} from '../src/index.js';
import { DATABASE_URL, dropTestDatabase, makeFace, openTestDatabase } from './helpers.js';

const actor = { keyId: 'abcdefghijkl', requestId: 'request-1' };
let db: Database;

before(async () => {
  db = await openTestDatabase();
});

after(async () => {
  await dropTestDatabase(db);
});

/** Reads every row of every table of the schema as JSON text, with bytea columns in hex. */
async function dumpSchema(database: Database): Promise<Map<string, string>> {
  const tables = await database.sql<{ table_name: string }[]>`
    select table_name from information_schema.tables where table_schema = ${database.schema}`;
  const dump = new Map<string, string>();
  for (const { table_name: table } of tables) {
    const rows = await database.sql`
      select row_to_json(t)::text as row from ${database.sql(database.schema)}.${database.sql(table)} t`;
    dump.set(table, rows.map((row) => row.row as string).join('\n'));
  }
  return dump;
}

describe('erasure', () => {
  test('erasing a visitor leaves nothing of it but audit ids', async () => {
    const visitor = await createVisitor(db, {
      name: 'Erika Mustermann',
      externalId: 'emp-erasure-77',
      metadata: { badge: 'B-4471' },
    });
    const first = await insertFace(db, { ...makeFace(visitor.id), audit: { actor } });
    const second = await insertFace(db, makeFace(visitor.id));
    await recordMatches(db, actor, [
      { visitorId: visitor.id, faceId: first.face.id, similarity: 0.8 },
      { visitorId: null, faceId: null, similarity: null },
    ]);
    const batch = await createBatch(
      db,
      {
        source: { type: 'directory', path: '/data/visitors' },
        mode: 'enrol',
        multipleFaces: 'skip',
      },
      { actor },
    );
    await upsertBatchItems(db, batch.id, [
      {
        key: 'emp-erasure-77/photo.jpg',
        externalId: 'emp-erasure-77',
        name: 'Erika Mustermann',
        locator: '/data/visitors/emp-erasure-77/photo.jpg',
      },
      {
        key: 'someone-else/photo.jpg',
        externalId: 'someone-else',
        name: 'Someone Else',
        locator: '/data/visitors/someone-else/photo.jpg',
      },
    ]);
    const stored = await getEmbeddingBytes(db, first.face.id);
    const before = await dumpSchema(db);

    const erasure = await eraseVisitor(db, visitor.id, actor);
    const afterDump = await dumpSchema(db);

    assert.ok(erasure);
    assert.deepEqual(erasure.faceIds.sort(), [first.face.id, second.face.id].sort());
    assert.ok(erasure.seq > 0);
    assert.equal(erasure.redactedBatchItems, 1);
    const traces = [
      'Erika Mustermann',
      'emp-erasure-77',
      'B-4471',
      first.face.imageSha256.toString('hex'),
      second.face.imageSha256.toString('hex'),
      stored.toString('hex'),
    ];
    // The check can fail: every trace is in the schema before the erasure.
    const beforeText = [...before.values()].join('\n');
    for (const trace of traces) assert.ok(beforeText.includes(trace), `${trace} missing before`);
    for (const [table, text] of afterDump) {
      for (const trace of traces) assert.ok(!text.includes(trace), `${table} still holds ${trace}`);
      if (table !== 'audit_log')
        assert.ok(!text.includes(visitor.id), `${table} holds the visitor id`);
    }
    assert.ok(afterDump.get('batch_items')!.includes('Someone Else'));
  });

  test('erasure is audited with ids and counts only', async () => {
    const visitor = await createVisitor(db, { name: 'Audited Person' });
    await insertFace(db, makeFace(visitor.id));

    await eraseVisitor(db, visitor.id, actor);
    const { items } = await listAudit(db, { targetType: 'visitor', targetId: visitor.id });

    assert.equal(items.length, 1);
    assert.equal(items[0]!.action, 'visitor.delete');
    assert.equal(items[0]!.keyId, actor.keyId);
    assert.equal(items[0]!.requestId, actor.requestId);
    assert.deepEqual(items[0]!.details, { faces: 1, redactedBatchItems: 0 });
  });

  test('erasing an unknown visitor returns null', async () => {
    assert.equal(await eraseVisitor(db, '00000000-0000-4000-8000-000000000000', actor), null);
    assert.equal(await eraseVisitor(db, 'not-a-uuid', actor), null);
  });

  test('erasing one face returns its feed seq and audits it', async () => {
    const visitor = await createVisitor(db, { name: 'One Face' });
    const face = await insertFace(db, makeFace(visitor.id));

    const erased = await eraseFace(db, visitor.id, face.face.id, actor);
    const again = await eraseFace(db, visitor.id, face.face.id, actor);
    const { items } = await listAudit(db, { targetType: 'face', targetId: String(face.face.id) });

    assert.ok(erased);
    assert.ok(erased.seq > 0);
    assert.equal(again, null);
    assert.deepEqual(
      items.map((item) => item.action),
      ['face.delete'],
    );
  });
});

describe('audit', () => {
  test('a new face is audited in the statement that stores it', async () => {
    const visitor = await createVisitor(db, { name: 'Enrolled' });
    const input = { ...makeFace(visitor.id), audit: { actor, details: { batchId: 'b-1' } } };

    const first = await insertFace(db, input);
    const repeat = await insertFace(db, input);
    const { items } = await listAudit(db, { targetType: 'face', targetId: String(first.face.id) });

    assert.equal(first.created, true);
    assert.equal(repeat.created, false);
    assert.equal(items.length, 1);
    assert.equal(items[0]!.action, 'face.enrol');
    assert.deepEqual(items[0]!.details, { visitorId: visitor.id, batchId: 'b-1' });
  });

  test('a batch item face is audited with the key that started the batch', async () => {
    const batch = await createBatch(
      db,
      { source: { type: 'directory', path: '/data/x' }, mode: 'enrol', multipleFaces: 'skip' },
      { actor },
    );
    await upsertBatchItems(db, batch.id, [
      { key: 'k1', externalId: 'x1', name: 'X One', locator: '/data/x/k1' },
    ]);
    const visitor = await createVisitor(db, { name: 'X One', externalId: 'x1' });

    const stored = await storeItemFace(
      db,
      batch.id,
      'k1',
      {
        ...makeFace(visitor.id),
        audit: { actor: { keyId: batch.createdBy }, details: { batchId: batch.id } },
      },
      { replaceOtherModels: false, facesDetected: 1 },
    );
    const started = await listAudit(db, { targetType: 'batch', targetId: batch.id });
    const enrolled = await listAudit(db, { targetType: 'face', targetId: String(stored.faceId) });

    assert.equal(batch.createdBy, actor.keyId);
    assert.deepEqual(
      started.items.map((item) => item.action),
      ['batch.start'],
    );
    assert.equal(enrolled.items[0]!.keyId, actor.keyId);
  });

  test('audit pages run newest first', async () => {
    const ids = [];
    for (let i = 0; i < 3; i += 1) ids.push((await createVisitor(db, { name: `Paged ${i}` })).id);
    const visitor = await createVisitor(db, { name: 'Paged' });
    for (let i = 0; i < 3; i += 1)
      await insertFace(db, { ...makeFace(visitor.id), audit: { actor } });

    const first = await listAudit(db, { limit: 2 });
    const second = await listAudit(db, { limit: 2, before: first.nextBefore! });

    assert.equal(first.items.length, 2);
    assert.ok(first.items[0]!.id > first.items[1]!.id);
    assert.ok(second.items[0]!.id < first.items[1]!.id);
  });
});

describe('api keys and the match log', () => {
  test('keys are stored hashed and revoked once', async () => {
    const keySha256 = randomBytes(32);
    await insertApiKey(
      db,
      { id: 'k1k2k3k4k5k6', name: 'lobby', keySha256, scopes: ['recognize'], createdBy: 'cli' },
      actor,
    );

    const first = await revokeApiKey(db, 'k1k2k3k4k5k6', actor);
    const second = await revokeApiKey(db, 'k1k2k3k4k5k6', actor);
    const listed = (await listApiKeys(db)).find((key) => key.id === 'k1k2k3k4k5k6');
    const { items } = await listAudit(db, { targetType: 'key', targetId: 'k1k2k3k4k5k6' });

    assert.ok(first?.revokedAt);
    assert.deepEqual(second?.revokedAt, first.revokedAt);
    assert.ok(listed);
    assert.ok(!('keySha256' in listed));
    assert.deepEqual(
      items.map((item) => item.action),
      ['key.revoke', 'key.create'],
    );
    assert.equal(await revokeApiKey(db, 'zzzzzzzzzzzz', actor), null);
  });

  test('the last admin key is kept when asked', async () => {
    const admin = (id: string) =>
      insertApiKey(
        db,
        { id, name: id, keySha256: randomBytes(32), scopes: ['admin'], createdBy: 'cli' },
        actor,
      );
    const guard = { keepAnAdmin: { adminKeysElsewhere: 0 } };
    await admin('adm1adm1adm1');
    await admin('adm2adm2adm2');

    const firstRevoked = await revokeApiKey(db, 'adm1adm1adm1', actor, guard);
    const lastKept = await revokeApiKey(db, 'adm2adm2adm2', actor, guard).catch(
      (error: unknown) => error,
    );
    const withEnvAdmin = await revokeApiKey(db, 'adm2adm2adm2', actor, {
      keepAnAdmin: { adminKeysElsewhere: 1 },
    });

    assert.ok(firstRevoked?.revokedAt);
    assert.ok(lastKept instanceof FaceGateError, String(lastKept));
    assert.equal(lastKept.code, 'CONFLICT');
    assert.match(lastKept.message, /last active admin key/);
    assert.ok(withEnvAdmin?.revokedAt);
  });

  test('key rows reject unknown scopes', async () => {
    await assert.rejects(
      insertApiKey(
        db,
        {
          id: 'badscope0000',
          name: 'x',
          keySha256: randomBytes(32),
          scopes: ['root' as never],
          createdBy: 'cli',
        },
        actor,
      ),
      /api_keys_scopes_check/,
    );
  });

  test('match log rows age out', async () => {
    await recordMatches(db, actor, [{ visitorId: null, faceId: null, similarity: null }]);
    await db.sql`update ${db.sql(db.schema)}.match_log set at = now() - interval '3 days'`;
    await recordMatches(db, actor, [{ visitorId: null, faceId: null, similarity: 0.1 }]);

    const removed = await pruneMatchLog(db, 2);
    const [{ count }] = await db.sql<[{ count: string }]>`
      select count(*) from ${db.sql(db.schema)}.match_log`;

    assert.ok(removed >= 1);
    assert.equal(Number(count), 1);
  });
});

describe('a service role with the granted rights only', () => {
  const role = `test_role_${randomBytes(5).toString('hex')}`;
  let owner: Database;
  let service: Database;

  before(async () => {
    owner = await openTestDatabase();
    await owner.sql.unsafe(`create role "${role}" login`);
    await grantServiceAccess(owner, role);
    const url = new URL(DATABASE_URL);
    url.username = role;
    service = createDatabase({ url: url.toString(), schema: owner.schema, maxConnections: 2 });
  });

  after(async () => {
    await service.close();
    await owner.sql`drop schema if exists ${owner.sql(owner.schema)} cascade`;
    await owner.sql.unsafe(`drop owned by "${role}"`);
    await owner.sql.unsafe(`drop role "${role}"`);
    await owner.close();
  });

  test('does the service work', async () => {
    await migrate(service);
    const visitor = await createVisitor(service, { name: 'Role Test' });
    const face = await insertFace(service, { ...makeFace(visitor.id), audit: { actor } });
    await recordMatches(service, actor, [
      { visitorId: visitor.id, faceId: face.face.id, similarity: 0.9 },
    ]);
    const erasure = await eraseVisitor(service, visitor.id, actor);

    assert.ok(erasure);
    assert.equal(erasure.faceIds.length, 1);
  });

  test('cannot change the schema or the audit log', async () => {
    const schema = service.sql(service.schema);
    const attempts: [string, () => Promise<unknown>][] = [
      ['create table', () => service.sql`create table ${schema}.intruder (id int)`],
      ['alter table', () => service.sql`alter table ${schema}.faces add column note text`],
      ['drop table', () => service.sql`drop table ${schema}.faces`],
      ['truncate', () => service.sql`truncate ${schema}.faces`],
      [
        'disable trigger',
        () => service.sql`alter table ${schema}.faces disable trigger faces_record_change`,
      ],
      ['update audit', () => service.sql`update ${schema}.audit_log set key_id = 'someone'`],
      ['delete audit', () => service.sql`delete from ${schema}.audit_log`],
      ['delete keys', () => service.sql`delete from ${schema}.api_keys`],
      ['create schema', () => service.sql`create schema intruder_schema`],
    ];

    for (const [name, attempt] of attempts) {
      await assert.rejects(attempt(), (error: { code?: string; message?: string }) => {
        assert.ok(
          error.code === '42501' || /must be owner/.test(error.message ?? ''),
          `${name}: ${error.code} ${error.message}`,
        );
        return true;
      });
    }
  });

  test('a pending migration names the fix', async () => {
    const future = [
      ...MIGRATIONS,
      { version: 999, name: 'future', sql: (s: string) => `create table ${s}.future (id int)` },
    ];

    await assert.rejects(migrate(service, future), (error: { code?: string; message?: string }) => {
      assert.equal(error.code, 'CONFIG_INVALID');
      assert.match(error.message ?? '', /DATABASE_MIGRATION_URL/);
      return true;
    });
  });
});

async function getEmbeddingBytes(database: Database, faceId: number): Promise<Buffer> {
  const [row] = await database.sql<[{ embedding: Buffer }]>`
    select embedding from ${database.sql(database.schema)}.faces where id = ${faceId}`;
  return row.embedding;
}
