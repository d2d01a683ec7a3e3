import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import type { Database, FaceChange } from '../src/index.js';
import {
  changeChannel,
  createVisitor,
  deleteFace,
  deleteVisitor,
  insertFace,
  listenForChanges,
  maxChangeSeq,
  readChanges,
  transaction,
} from '../src/index.js';
import { bytesOf, dropTestDatabase, makeFace, openTestDatabase, waitUntil } from './helpers.js';

let db: Database;

before(async () => {
  db = await openTestDatabase();
});

after(async () => {
  await dropTestDatabase(db);
});

test('deleting a visitor logs one delete per face after the adds', async () => {
  const visitor = await createVisitor(db, { name: 'Cascade' });
  const bystander = await createVisitor(db, { name: 'Bystander' });
  const start = await maxChangeSeq(db);
  const first = await insertFace(db, makeFace(visitor.id));
  const second = await insertFace(db, makeFace(visitor.id));
  const kept = await insertFace(db, makeFace(bystander.id));

  await deleteVisitor(db, visitor.id);
  const changes = await readChanges(db, start, 100);

  assert.deepEqual(
    changes.slice(0, 3).map((change) => [change.op, change.faceId]),
    [
      ['add', first.face.id],
      ['add', second.face.id],
      ['add', kept.face.id],
    ],
  );
  const deletes = changes.slice(3);
  assert.ok(deletes.every((change) => change.op === 'delete'));
  assert.deepEqual(
    deletes.map((change) => change.faceId).sort((a, b) => a - b),
    [first.face.id, second.face.id],
  );
  // The feed keeps no link from a deleted face to its visitor.
  assert.ok(deletes.every((change) => change.visitorId === null));
  assert.ok(deletes.every((change) => change.embedding === null));
  const seqs = changes.map((change) => change.seq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
  );
});

test('readChanges returns embeddings only for faces that still exist', async () => {
  const visitor = await createVisitor(db, { name: 'Feed reader' });
  const start = await maxChangeSeq(db);
  const keptInput = makeFace(visitor.id);
  const kept = await insertFace(db, keptInput);
  const removed = await insertFace(db, makeFace(visitor.id));
  await deleteFace(db, visitor.id, removed.face.id);

  const changes = await readChanges(db, start, 100);

  assert.equal(changes.length, 3);
  const [keptAdd, removedAdd, removedDelete] = changes as [FaceChange, FaceChange, FaceChange];
  assert.equal(keptAdd.op, 'add');
  assert.equal(keptAdd.faceId, kept.face.id);
  assert.equal(keptAdd.visitorId, visitor.id);
  assert.equal(keptAdd.modelId, keptInput.modelId);
  assert.ok(keptAdd.embedding);
  assert.deepEqual(bytesOf(keptAdd.embedding), bytesOf(keptInput.embedding));
  assert.equal(removedAdd.op, 'add');
  assert.equal(removedAdd.faceId, removed.face.id);
  assert.equal(removedAdd.embedding, null);
  assert.equal(removedDelete.op, 'delete');
  assert.equal(removedDelete.faceId, removed.face.id);
});

test('readChanges honours afterSeq and limit', async () => {
  const visitor = await createVisitor(db, { name: 'Limited' });
  const start = await maxChangeSeq(db);
  for (let i = 0; i < 3; i++) await insertFace(db, makeFace(visitor.id));

  const firstTwo = await readChanges(db, start, 2);
  const rest = await readChanges(db, firstTwo[1]!.seq, 2);

  assert.equal(firstTwo.length, 2);
  assert.equal(rest.length, 1);
  assert.ok(rest[0]!.seq > firstTwo[1]!.seq);
  assert.equal(await maxChangeSeq(db), rest[0]!.seq);
});

test('readChanges rejects bad arguments', async () => {
  const invalid: [number, number][] = [
    [-1, 10],
    [0.5, 10],
    [0, 0],
    [0, 10_001],
  ];

  for (const [afterSeq, limit] of invalid) {
    await assert.rejects(
      readChanges(db, afterSeq, limit),
      (error: unknown) => error instanceof FaceGateError && error.code === 'INVALID_REQUEST',
    );
  }
});

test('a duplicate image adds nothing to the feed', async () => {
  const visitor = await createVisitor(db, { name: 'Duplicate feed' });
  const input = makeFace(visitor.id);
  await insertFace(db, input);
  const afterFirst = await maxChangeSeq(db);

  await insertFace(db, input);

  assert.equal(await maxChangeSeq(db), afterFirst);
});

/** True while some session is waiting for an advisory lock in a query on this schema. */
async function isWaitingOnFeedLock(): Promise<boolean> {
  const rows = await db.sql`
    select 1 from pg_stat_activity
    where wait_event_type = 'Lock' and wait_event = 'advisory'
      and position(${db.schema} in query) > 0`;
  return rows.length > 0;
}

test('feed seq order equals commit order', async () => {
  const first = await createVisitor(db, { name: 'Commits first' });
  const second = await createVisitor(db, { name: 'Commits second' });
  let lastSeq = await maxChangeSeq(db);
  const seen: FaceChange[] = [];
  async function pollFeed(): Promise<void> {
    const changes = await readChanges(db, lastSeq, 100);
    seen.push(...changes);
    lastSeq = changes.at(-1)?.seq ?? lastSeq;
  }

  // The first transaction draws its seq, then stays open until released.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let firstInserted!: () => void;
  const firstHasInserted = new Promise<void>((resolve) => (firstInserted = resolve));
  const firstTransaction = transaction(db, async (tx) => {
    const result = await insertFace(tx, makeFace(first.id));
    firstInserted();
    await released;
    return result;
  });
  await firstHasInserted;

  // The second insert either waits for the feed lock, or, were seq not serialised,
  // commits a larger seq before the first transaction does.
  let secondSettled = false;
  const secondInsert = insertFace(db, makeFace(second.id)).finally(() => {
    secondSettled = true;
  });
  await waitUntil(
    async () => secondSettled || (await isWaitingOnFeedLock()),
    'the second insert commits or waits for the feed lock',
  );
  await pollFeed();
  release();
  const [firstResult, secondResult] = await Promise.all([firstTransaction, secondInsert]);
  await pollFeed();

  assert.deepEqual(
    seen.map((change) => change.faceId),
    [firstResult.face.id, secondResult.face.id],
  );
});

test('listenForChanges receives the seq of an insert', async () => {
  const visitor = await createVisitor(db, { name: 'Listened' });
  const received: number[] = [];
  let listenCalls = 0;
  const unlisten = await listenForChanges(db, (seq) => received.push(seq), {
    onListen: () => (listenCalls += 1),
  });

  try {
    await insertFace(db, makeFace(visitor.id));
    const expectedSeq = await maxChangeSeq(db);
    await waitUntil(() => received.includes(expectedSeq), `seq ${expectedSeq} is notified`);

    assert.equal(listenCalls, 1);
    assert.ok(received.every((seq) => Number.isSafeInteger(seq) && seq <= expectedSeq));
  } finally {
    await unlisten();
  }
});

test('unlisten stops notifications', async () => {
  const visitor = await createVisitor(db, { name: 'Unlistened' });
  const received: number[] = [];
  const unlisten = await listenForChanges(db, (seq) => received.push(seq));
  const marker: string[] = [];
  const unlistenMarker = await db.sql.listen(changeChannel(db), (payload) => marker.push(payload));

  await unlisten();
  await insertFace(db, makeFace(visitor.id));
  const expectedSeq = await maxChangeSeq(db);
  // The second listener proves the notification was delivered to this process.
  await waitUntil(() => marker.includes(String(expectedSeq)), 'the marker listener is notified');
  await unlistenMarker.unlisten();

  assert.deepEqual(received, []);
});
