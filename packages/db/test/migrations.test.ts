import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import type { Database } from '../src/index.js';
import { MIGRATIONS, createDatabase, migrate } from '../src/index.js';
import { DATABASE_URL, dropTestDatabase, openTestDatabase, randomSchemaName } from './helpers.js';

const opened: Database[] = [];

after(async () => {
  for (const db of opened) await dropTestDatabase(db);
});

const latestVersion = Math.max(...MIGRATIONS.map((migration) => migration.version));

test('migrate applies every migration once', async () => {
  const db = await openTestDatabase({ migrated: false });
  opened.push(db);

  const first = await migrate(db);
  const second = await migrate(db);

  assert.deepEqual(
    first.applied,
    MIGRATIONS.map((migration) => migration.version),
  );
  assert.deepEqual(second.applied, []);
  assert.equal(second.version, latestVersion);
  const rows = await db.sql`select version from ${db.sql(db.schema)}.schema_migrations`;
  assert.equal(rows.length, MIGRATIONS.length);
});

test('migrate creates the tables in the schema', async () => {
  const db = await openTestDatabase();
  opened.push(db);

  const rows = await db.sql<{ table_name: string }[]>`
    select table_name from information_schema.tables
    where table_schema = ${db.schema}
    order by table_name`;

  assert.deepEqual(
    rows.map((row) => row.table_name),
    [
      'api_keys',
      'audit_log',
      'batch_items',
      'batches',
      'face_changes',
      'faces',
      'instance',
      'match_log',
      'schema_migrations',
      'visitors',
    ],
  );
});

test('concurrent migrate calls both succeed', async () => {
  const schema = randomSchemaName();
  const first = createDatabase({ url: DATABASE_URL, schema });
  const second = createDatabase({ url: DATABASE_URL, schema });
  opened.push(first);
  after(() => second.close());

  const results = await Promise.all([migrate(first), migrate(second)]);

  const appliedCounts = results.map((result) => result.applied.length).sort();
  assert.deepEqual(appliedCounts, [0, MIGRATIONS.length]);
  assert.deepEqual(
    results.map((result) => result.version),
    [latestVersion, latestVersion],
  );
});

test('schema name with SQL in it is rejected', () => {
  const names = [
    'face"gate',
    'facegate; drop table x',
    'face gate',
    '1facegate',
    '',
    'pg_facegate',
  ];

  for (const schema of names) {
    assert.throws(
      () => createDatabase({ url: DATABASE_URL, schema }),
      (error: unknown) => error instanceof FaceGateError && error.code === 'CONFIG_INVALID',
      `schema ${JSON.stringify(schema)} should be rejected`,
    );
  }
});

test('schema name too long for the channel is rejected', async () => {
  const longest = 'a'.repeat(50);
  const tooLong = 'a'.repeat(51);

  const db = createDatabase({ url: DATABASE_URL, schema: longest });
  await db.close();

  assert.throws(
    () => createDatabase({ url: DATABASE_URL, schema: tooLong }),
    (error: unknown) => error instanceof FaceGateError && /51 characters/.test(error.message),
  );
});

test('mixed-case schema name is quoted', async () => {
  const db = await openTestDatabase({ schema: `Mixed_${randomSchemaName()}` });
  opened.push(db);

  const rows = await db.sql`select 1 from pg_namespace where nspname = ${db.schema}`;

  assert.equal(rows.length, 1);
});
