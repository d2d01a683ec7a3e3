import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type { Database } from '@facegate/db';
import { createVisitor, deleteVisitor, updateVisitor } from '@facegate/db';

import { VisitorCache } from '../src/index.js';
import { dropTestDatabase, openTestDatabase, silentLogger, waitUntil } from './helpers.js';

let db: Database;

before(async () => {
  db = await openTestDatabase();
});

after(async () => {
  await dropTestDatabase(db);
});

/** Renames a visitor without the notification, as a change the cache cannot see. */
async function renameSilently(id: string, name: string): Promise<void> {
  const { sql } = db;
  await sql.begin(async (tx) => {
    await tx`alter table ${tx(db.schema)}.visitors disable trigger visitors_notify_change`;
    await tx`update ${tx(db.schema)}.visitors set name = ${name} where id = ${id}`;
    await tx`alter table ${tx(db.schema)}.visitors enable trigger visitors_notify_change`;
  });
}

async function nameOf(cache: VisitorCache, id: string): Promise<string | undefined> {
  return (await cache.get([id])).get(id)?.name;
}

test('visitor cache', async (t) => {
  const cache = new VisitorCache(db, silentLogger);
  await cache.start();
  t.after(() => cache.close());

  await t.test('second lookup is served from memory', async () => {
    const visitor = await createVisitor(db, { name: 'Ada', externalId: 'cache-1' });
    assert.equal(await nameOf(cache, visitor.id), 'Ada');

    await renameSilently(visitor.id, 'Changed behind the cache');

    assert.equal(await nameOf(cache, visitor.id), 'Ada');
    assert.equal(cache.size >= 1, true);
  });

  await t.test('rename drops the cached name', async () => {
    const visitor = await createVisitor(db, { name: 'Grace', externalId: 'cache-2' });
    assert.equal(await nameOf(cache, visitor.id), 'Grace');

    await updateVisitor(db, visitor.id, { name: 'Grace Hopper' });

    await waitUntil(
      async () => (await nameOf(cache, visitor.id)) === 'Grace Hopper',
      'the cache returns the new name',
      5000,
    );
  });

  await t.test('deleted visitor is no longer named', async () => {
    const visitor = await createVisitor(db, { name: 'Erased', externalId: 'cache-3' });
    assert.equal(await nameOf(cache, visitor.id), 'Erased');

    assert.equal(await deleteVisitor(db, visitor.id), true);

    await waitUntil(
      async () => (await nameOf(cache, visitor.id)) === undefined,
      'the deleted visitor is absent',
      5000,
    );
  });

  await t.test('lookup mixes cached and new ids', async () => {
    const first = await createVisitor(db, { name: 'First', externalId: 'cache-4' });
    const second = await createVisitor(db, { name: 'Second', externalId: 'cache-5' });
    await cache.get([first.id]);

    const found = await cache.get([first.id.toUpperCase(), second.id, first.id]);

    assert.deepEqual([...found.values()].map((visitor) => visitor.name).sort(), [
      'First',
      'Second',
    ]);
  });

  await t.test('truncate empties the cache', async () => {
    await createVisitor(db, { name: 'Anyone', externalId: 'cache-6' });
    const { sql } = db;
    await sql`truncate ${sql(db.schema)}.visitors cascade`;

    await waitUntil(() => cache.size === 0, 'the cache is empty', 5000);
  });
});

test('closed cache reads the database', async () => {
  const cache = new VisitorCache(db, silentLogger);
  await cache.start();
  const visitor = await createVisitor(db, { name: 'Before', externalId: 'cache-7' });
  await cache.get([visitor.id]);
  await cache.close();

  await renameSilently(visitor.id, 'After');

  assert.equal(await nameOf(cache, visitor.id), 'After');
});
