import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import type { Database, Visitor } from '../src/index.js';
import {
  createVisitor,
  deleteVisitor,
  getVisitor,
  getVisitorsByIds,
  listVisitors,
  transaction,
  updateVisitor,
} from '../src/index.js';
import { dropTestDatabase, openTestDatabase } from './helpers.js';

let db: Database;

before(async () => {
  db = await openTestDatabase();
});

after(async () => {
  await dropTestDatabase(db);
});

function isFaceGateError(code: string) {
  return (error: unknown) => error instanceof FaceGateError && error.code === code;
}

const MISSING_ID = '00000000-0000-4000-8000-000000000000';

test('createVisitor stores the given fields', async () => {
  const created = await createVisitor(db, {
    externalId: 'badge-100',
    name: 'Ada Lovelace',
    metadata: { company: 'Analytical Engines', floor: 3 },
  });

  const loaded = await getVisitor(db, created.id);

  assert.deepEqual(loaded, created);
  assert.equal(created.externalId, 'badge-100');
  assert.equal(created.name, 'Ada Lovelace');
  assert.deepEqual(created.metadata, { company: 'Analytical Engines', floor: 3 });
  assert.ok(created.createdAt instanceof Date);
});

test('createVisitor defaults metadata and externalId', async () => {
  const created = await createVisitor(db, { name: 'Grace Hopper' });

  assert.equal(created.externalId, null);
  assert.deepEqual(created.metadata, {});
});

test('createVisitor rejects a duplicate externalId', async () => {
  await createVisitor(db, { externalId: 'badge-dup', name: 'First' });

  await assert.rejects(createVisitor(db, { externalId: 'badge-dup', name: 'Second' }), (error) => {
    assert.ok(error instanceof FaceGateError);
    assert.equal(error.code, 'CONFLICT');
    assert.equal(error.status, 409);
    assert.match(error.message, /badge-dup/);
    return true;
  });
});

test('createVisitor rejects invalid input', async () => {
  await assert.rejects(createVisitor(db, { name: '  ' }), isFaceGateError('INVALID_REQUEST'));
  await assert.rejects(
    createVisitor(db, { name: 'x', externalId: '' }),
    isFaceGateError('INVALID_REQUEST'),
  );
  await assert.rejects(
    createVisitor(db, { name: 'x', metadata: [1, 2] as unknown as Record<string, unknown> }),
    isFaceGateError('INVALID_REQUEST'),
  );
});

test('getVisitor returns null for unknown and malformed ids', async () => {
  assert.equal(await getVisitor(db, MISSING_ID), null);
  assert.equal(await getVisitor(db, 'not-a-uuid'), null);
  assert.equal(await getVisitor(db, "'; drop table visitors; --"), null);
});

test('getVisitorsByIds returns found visitors by id', async () => {
  const first = await createVisitor(db, { name: 'First by id' });
  const second = await createVisitor(db, { name: 'Second by id' });

  const found = await getVisitorsByIds(db, [
    first.id,
    second.id.toUpperCase(),
    MISSING_ID,
    'garbage',
    first.id,
  ]);

  assert.deepEqual([...found.keys()].sort(), [first.id, second.id].sort());
  assert.equal(found.get(first.id)?.name, 'First by id');
  assert.equal(found.get(second.id)?.name, 'Second by id');
});

test('getVisitorsByIds with no ids returns an empty map', async () => {
  const found = await getVisitorsByIds(db, []);

  assert.equal(found.size, 0);
});

test('updateVisitor changes only the given fields', async () => {
  const created = await createVisitor(db, {
    externalId: 'badge-upd',
    name: 'Before',
    metadata: { keep: false, old: 1 },
  });

  const updated = await updateVisitor(db, created.id, { metadata: { keep: true } });

  assert.ok(updated);
  assert.equal(updated.name, 'Before');
  assert.equal(updated.externalId, 'badge-upd');
  assert.deepEqual(updated.metadata, { keep: true });
  assert.ok(updated.updatedAt.getTime() >= created.updatedAt.getTime());
  assert.deepEqual(updated.createdAt, created.createdAt);
});

test('updateVisitor can clear externalId', async () => {
  const created = await createVisitor(db, { externalId: 'badge-clear', name: 'Clear' });

  const updated = await updateVisitor(db, created.id, { externalId: null, name: 'Cleared' });

  assert.equal(updated?.externalId, null);
  assert.equal(updated?.name, 'Cleared');
});

test('updateVisitor with an empty patch returns the visitor', async () => {
  const created = await createVisitor(db, { name: 'Unchanged' });

  const updated = await updateVisitor(db, created.id, {});

  assert.deepEqual(updated, created);
});

test('updateVisitor returns null for unknown and malformed ids', async () => {
  assert.equal(await updateVisitor(db, MISSING_ID, { name: 'Nobody' }), null);
  assert.equal(await updateVisitor(db, 'not-a-uuid', { name: 'Nobody' }), null);
});

test('updateVisitor rejects a taken externalId', async () => {
  await createVisitor(db, { externalId: 'badge-taken', name: 'Owner' });
  const other = await createVisitor(db, { externalId: 'badge-other', name: 'Other' });

  await assert.rejects(updateVisitor(db, other.id, { externalId: 'badge-taken' }), (error) => {
    assert.ok(error instanceof FaceGateError);
    assert.equal(error.code, 'CONFLICT');
    assert.match(error.message, /badge-taken/);
    return true;
  });
  assert.equal((await getVisitor(db, other.id))?.externalId, 'badge-other');
});

test('deleteVisitor reports whether the visitor existed', async () => {
  const created = await createVisitor(db, { name: 'Short stay' });

  const first = await deleteVisitor(db, created.id);
  const second = await deleteVisitor(db, created.id);

  assert.equal(first, true);
  assert.equal(second, false);
  assert.equal(await getVisitor(db, created.id), null);
  assert.equal(await deleteVisitor(db, 'not-a-uuid'), false);
});

test('transaction rolls back every write when work throws', async () => {
  let createdId = '';

  await assert.rejects(
    transaction(db, async (tx) => {
      createdId = (await createVisitor(tx, { name: 'Rolled back' })).id;
      throw new Error('abort');
    }),
    /abort/,
  );

  assert.notEqual(createdId, '');
  assert.equal(await getVisitor(db, createdId), null);
});

test('listVisitors pages by cursor in creation order', async () => {
  const pagedDb = await openTestDatabase();
  try {
    const created: Visitor[] = [];
    for (let i = 0; i < 7; i++) created.push(await createVisitor(pagedDb, { name: `V${i}` }));
    // Visitors created in one transaction share created_at, so the id breaks the tie.
    await transaction(pagedDb, async (tx) => {
      for (let i = 7; i < 10; i++) created.push(await createVisitor(tx, { name: `V${i}` }));
    });
    const expectedOrder = [...created.slice(0, 7).map((visitor) => visitor.id)];
    expectedOrder.push(
      ...created
        .slice(7)
        .map((visitor) => visitor.id)
        .sort(),
    );

    const seen: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | undefined;
    let total = 0;
    do {
      const page = await listVisitors(pagedDb, cursor ? { limit: 3, cursor } : { limit: 3 });
      seen.push(...page.items.map((visitor) => visitor.id));
      pageSizes.push(page.items.length);
      total = page.total;
      cursor = page.nextCursor;
    } while (cursor);

    assert.deepEqual(pageSizes, [3, 3, 3, 1]);
    assert.deepEqual(seen, expectedOrder);
    assert.equal(total, 10);
  } finally {
    await dropTestDatabase(pagedDb);
  }
});

test('listVisitors cursor survives deleting its row', async () => {
  const pagedDb = await openTestDatabase();
  try {
    const created: Visitor[] = [];
    for (let i = 0; i < 4; i++) created.push(await createVisitor(pagedDb, { name: `D${i}` }));

    const first = await listVisitors(pagedDb, { limit: 2 });
    await deleteVisitor(pagedDb, created[1]!.id);
    const second = await listVisitors(pagedDb, { limit: 2, cursor: first.nextCursor! });

    assert.deepEqual(
      second.items.map((visitor) => visitor.id),
      [created[2]!.id, created[3]!.id],
    );
    assert.equal(second.nextCursor, undefined);
    assert.equal(second.total, 3);
  } finally {
    await dropTestDatabase(pagedDb);
  }
});

test('listVisitors pages by offset', async () => {
  const pagedDb = await openTestDatabase();
  try {
    const created: Visitor[] = [];
    for (let i = 0; i < 5; i++) created.push(await createVisitor(pagedDb, { name: `O${i}` }));

    const page = await listVisitors(pagedDb, { limit: 2, offset: 2 });
    const last = await listVisitors(pagedDb, { limit: 2, offset: 4 });

    assert.deepEqual(
      page.items.map((visitor) => visitor.id),
      [created[2]!.id, created[3]!.id],
    );
    assert.ok(page.nextCursor);
    assert.deepEqual(
      last.items.map((visitor) => visitor.id),
      [created[4]!.id],
    );
    assert.equal(last.nextCursor, undefined);
    assert.equal(last.total, 5);
  } finally {
    await dropTestDatabase(pagedDb);
  }
});

test('listVisitors rejects bad paging options', async () => {
  const invalid = [
    { limit: 0 },
    { limit: 1001 },
    { limit: 1.5 },
    { limit: 10, offset: -1 },
    { limit: 10, cursor: 'not a cursor' },
    { limit: 10, cursor: Buffer.from('123/not-a-uuid').toString('base64url') },
    { limit: 10, cursor: Buffer.from(`1/${MISSING_ID}`).toString('base64url'), offset: 0 },
  ];

  for (const options of invalid) {
    await assert.rejects(
      listVisitors(db, options),
      isFaceGateError('INVALID_REQUEST'),
      JSON.stringify(options),
    );
  }
});
