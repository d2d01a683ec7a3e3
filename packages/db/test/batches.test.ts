import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import type { Database, NewBatchItem, TableSource } from '../src/index.js';
import {
  cancelBatch,
  checkTableSource,
  claimBatchItem,
  claimBatchItems,
  completeBatchIfFinished,
  countBatchItems,
  createBatch,
  failBatch,
  deleteVisitor,
  findOrCreateVisitor,
  findOrCreateVisitors,
  findVisitorsImageFaces,
  getBatch,
  insertFace,
  listAudit,
  listBatchItems,
  listBatches,
  listFaces,
  listUnfinishedBatchIds,
  markBatchPlanned,
  markItemsQueued,
  parseColumnName,
  parseTableName,
  readTableImage,
  recordItemOutcome,
  recordItemOutcomes,
  startBatchPlanning,
  storeItemFace,
  storeItemFaces,
  streamTableSourceRows,
  upsertBatchItems,
} from '../src/index.js';
import { dropTestDatabase, makeFace, openTestDatabase, sha256 } from './helpers.js';

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

function items(...keys: string[]): NewBatchItem[] {
  return keys.map((key) => ({
    key,
    externalId: key.split('/')[0]!,
    name: key.split('/')[0]!,
    locator: `/photos/${key}`,
  }));
}

async function newBatch() {
  return createBatch(db, {
    source: { type: 'directory', path: '/photos' },
    mode: 'enrol',
    multipleFaces: 'skip',
  });
}

describe('batch items', () => {
  test('upsert twice stores each key once', async () => {
    const batch = await newBatch();

    const first = await upsertBatchItems(db, batch.id, items('a/1.jpg', 'a/2.jpg'));
    const second = await upsertBatchItems(db, batch.id, items('a/1.jpg', 'a/2.jpg', 'b/1.jpg'));

    assert.deepEqual(first.sort(), ['a/1.jpg', 'a/2.jpg']);
    assert.deepEqual(second.sort(), ['a/1.jpg', 'a/2.jpg', 'b/1.jpg']);
    assert.equal((await countBatchItems(db, batch.id)).total, 3);
  });

  test('upsert keeps finished items and leaves them out', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('a/1.jpg', 'a/2.jpg'));
    await recordItemOutcome(db, batch.id, 'a/1.jpg', { status: 'no_face', reason: 'none' });

    const unfinished = await upsertBatchItems(db, batch.id, items('a/1.jpg', 'a/2.jpg'));

    assert.deepEqual(unfinished, ['a/2.jpg']);
    const page = await listBatchItems(db, batch.id, { limit: 10, status: 'no_face' });
    assert.deepEqual(
      page.items.map((item) => item.key),
      ['a/1.jpg'],
    );
  });

  test('markItemsQueued moves only pending items', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('a/1.jpg', 'a/2.jpg'));
    await recordItemOutcome(db, batch.id, 'a/2.jpg', { status: 'failed', code: 'IMAGE_CORRUPT' });

    await markItemsQueued(db, batch.id, ['a/1.jpg', 'a/2.jpg']);

    const all = await listBatchItems(db, batch.id, { limit: 10 });
    assert.deepEqual(
      all.items.map((item) => [item.key, item.status]),
      [
        ['a/1.jpg', 'queued'],
        ['a/2.jpg', 'failed'],
      ],
    );
  });

  test('claim counts attempts and skips finished items', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('a/1.jpg'));

    const first = await claimBatchItem(db, batch.id, 'a/1.jpg');
    const second = await claimBatchItem(db, batch.id, 'a/1.jpg');
    await recordItemOutcome(db, batch.id, 'a/1.jpg', { status: 'too_small' });
    const afterFinish = await claimBatchItem(db, batch.id, 'a/1.jpg');

    assert.equal(first?.attempts, 1);
    assert.equal(second?.attempts, 2);
    assert.deepEqual(first?.source, { type: 'directory', path: '/photos' });
    assert.equal(first?.multipleFaces, 'skip');
    assert.equal(afterFinish, null);
  });

  test('outcome is recorded once', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('a/1.jpg'));

    const first = await recordItemOutcome(db, batch.id, 'a/1.jpg', {
      status: 'failed',
      code: 'IMAGE_CORRUPT',
      reason: 'truncated',
    });
    const second = await recordItemOutcome(db, batch.id, 'a/1.jpg', { status: 'no_face' });

    assert.equal(first, true);
    assert.equal(second, false);
    const [item] = (await listBatchItems(db, batch.id, { limit: 1 })).items;
    assert.equal(item?.status, 'failed');
    assert.equal(item?.code, 'IMAGE_CORRUPT');
  });

  test('counts add up to the total', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('a/1', 'a/2', 'a/3', 'a/4', 'a/5', 'a/6', 'a/7'));
    await upsertBatchItems(db, batch.id, [
      { key: 'line 9', externalId: null, name: null, locator: null, status: 'failed', code: 'X' },
    ]);
    await markItemsQueued(db, batch.id, ['a/7']);
    await recordItemOutcome(db, batch.id, 'a/1', { status: 'no_face' });
    await recordItemOutcome(db, batch.id, 'a/2', { status: 'multiple_faces' });
    await recordItemOutcome(db, batch.id, 'a/3', { status: 'too_small' });
    await recordItemOutcome(db, batch.id, 'a/4', { status: 'skipped' });
    const visitor = await findOrCreateVisitor(db, `counts-${randomBytes(4).toString('hex')}`, 'C');
    await storeItemFace(db, batch.id, 'a/5', makeFace(visitor.id), {
      replaceOtherModels: false,
      facesDetected: 1,
    });

    const counts = await countBatchItems(db, batch.id);

    assert.deepEqual(counts, {
      total: 8,
      done: 6,
      facesStored: 1,
      noFace: 1,
      multipleFaces: 1,
      tooSmall: 1,
      failed: 1,
      skipped: 1,
      pending: 2,
    });
  });

  test('ignored items stay out of the counts', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, [
      ...items('a/1.jpg'),
      {
        key: 'a/notes.txt',
        externalId: 'a',
        name: null,
        locator: '/photos/a/notes.txt',
        status: 'ignored',
        code: 'NOT_AN_IMAGE',
        reason: 'no image file extension',
      },
    ]);

    const counts = await countBatchItems(db, batch.id);
    const ignored = await listBatchItems(db, batch.id, { limit: 10, status: 'ignored' });

    assert.equal(counts.total, 1);
    assert.equal(counts.pending, 1);
    assert.deepEqual(
      ignored.items.map((item) => [item.key, item.code]),
      [['a/notes.txt', 'NOT_AN_IMAGE']],
    );
  });

  test('item pages follow the cursor', async () => {
    const batch = await newBatch();
    const keys = Array.from({ length: 7 }, (_, i) => `p/${i}.jpg`);
    await upsertBatchItems(db, batch.id, items(...keys));

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await listBatchItems(db, batch.id, { limit: 3, cursor });
      seen.push(...page.items.map((item) => item.key));
      cursor = page.nextCursor;
    } while (cursor);

    assert.deepEqual(seen, keys);
  });

  test('item page rejects a bad limit and cursor', async () => {
    const batch = await newBatch();

    await assert.rejects(
      listBatchItems(db, batch.id, { limit: 0 }),
      isFaceGateError('INVALID_REQUEST'),
    );
    await assert.rejects(
      listBatchItems(db, batch.id, { limit: 5, cursor: '!!' }),
      isFaceGateError('INVALID_REQUEST'),
    );
  });
});

describe('batch faces', () => {
  test('stored face is recorded once per item', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('v/1.jpg'));
    const visitor = await findOrCreateVisitor(db, `face-${randomBytes(4).toString('hex')}`, 'F');
    const face = makeFace(visitor.id);

    const first = await storeItemFace(db, batch.id, 'v/1.jpg', face, {
      replaceOtherModels: false,
      facesDetected: 1,
    });
    const second = await storeItemFace(db, batch.id, 'v/1.jpg', face, {
      replaceOtherModels: false,
      facesDetected: 1,
    });

    assert.equal(first.recorded, true);
    assert.equal(first.status, 'done');
    assert.equal(second.recorded, false);
    assert.equal((await listFaces(db, visitor.id)).length, 1);
  });

  test('same image in another item is skipped', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('w/1.jpg', 'w/copy.jpg'));
    const visitor = await findOrCreateVisitor(db, `dup-${randomBytes(4).toString('hex')}`, 'D');
    const face = makeFace(visitor.id);

    const first = await storeItemFace(db, batch.id, 'w/1.jpg', face, {
      replaceOtherModels: false,
      facesDetected: 1,
    });
    const copy = await storeItemFace(db, batch.id, 'w/copy.jpg', face, {
      replaceOtherModels: false,
      facesDetected: 1,
    });

    assert.equal(copy.recorded, true);
    assert.equal(copy.status, 'skipped');
    assert.equal(copy.faceId, first.faceId);
    assert.equal((await countBatchItems(db, batch.id)).skipped, 1);
  });

  test('re-extraction replaces the old model face', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('r/1.jpg'));
    const visitor = await findOrCreateVisitor(db, `re-${randomBytes(4).toString('hex')}`, 'R');
    const imageSha256 = sha256(`re-image-${randomBytes(4).toString('hex')}`);
    const old = await insertFace(db, makeFace(visitor.id, { modelId: 'old-model', imageSha256 }));
    const other = await insertFace(db, makeFace(visitor.id, { modelId: 'old-model' }));

    const result = await storeItemFace(
      db,
      batch.id,
      'r/1.jpg',
      makeFace(visitor.id, { modelId: 'new-model', imageSha256 }),
      { replaceOtherModels: true, facesDetected: 1 },
    );

    assert.equal(result.status, 'done');
    assert.equal(result.replacedFaces, 1);
    const faces = await listFaces(db, visitor.id);
    assert.deepEqual(faces.map((face) => face.id).sort(), [other.face.id, result.faceId].sort());
    assert.ok(!faces.some((face) => face.id === old.face.id));
  });

  test('findOrCreateVisitor creates one visitor under concurrency', async () => {
    const externalId = `race-${randomBytes(4).toString('hex')}`;

    const results = await Promise.all(
      Array.from({ length: 8 }, () => findOrCreateVisitor(db, externalId, 'Race')),
    );

    assert.equal(new Set(results.map((result) => result.id)).size, 1);
    assert.equal(results.filter((result) => result.created).length, 1);
  });
});

describe('batch items in groups', () => {
  test('a group claim takes the unfinished items once each', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('g/1', 'g/2', 'g/3'));
    await recordItemOutcome(db, batch.id, 'g/2', { status: 'no_face' });

    const claimed = await claimBatchItems(db, batch.id, ['g/3', 'g/1', 'g/2', 'g/1', 'g/none']);

    assert.deepEqual(
      claimed.map((item) => [item.key, item.attempts]),
      [
        ['g/1', 1],
        ['g/3', 1],
      ],
    );
    assert.deepEqual(await claimBatchItems(db, 'not-a-uuid', ['g/1']), []);
  });

  test('group outcomes are recorded once and keep nulls', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('o/1', 'o/2', 'o/3'));
    await recordItemOutcome(db, batch.id, 'o/3', { status: 'too_small', reason: 'first' });

    const recorded = await recordItemOutcomes(db, batch.id, [
      { key: 'o/1', outcome: { status: 'failed', code: 'IMAGE_CORRUPT', reason: "it's broken" } },
      { key: 'o/2', outcome: { status: 'skipped', faceId: 42 } },
      { key: 'o/3', outcome: { status: 'no_face' } },
    ]);

    assert.deepEqual([...recorded].sort(), ['o/1', 'o/2']);
    const page = await listBatchItems(db, batch.id, { limit: 10 });
    const byKey = new Map(page.items.map((item) => [item.key, item]));
    assert.equal(byKey.get('o/1')!.code, 'IMAGE_CORRUPT');
    assert.equal(byKey.get('o/1')!.reason, "it's broken");
    assert.equal(byKey.get('o/1')!.faceId, null);
    assert.equal(byKey.get('o/2')!.faceId, 42);
    assert.equal(byKey.get('o/2')!.code, null);
    assert.equal(byKey.get('o/3')!.status, 'too_small');
    assert.equal(byKey.get('o/3')!.reason, 'first');
  });

  test('group lookup answers each pair in order', async () => {
    const suffix = randomBytes(4).toString('hex');
    const visitor = await findOrCreateVisitor(db, `look-${suffix}`, 'L');
    const face = await insertFace(db, makeFace(visitor.id));
    const imageSha256 = face.face.imageSha256;

    const answers = await findVisitorsImageFaces(db, [
      { externalId: `nobody-${suffix}`, imageSha256 },
      { externalId: `look-${suffix}`, imageSha256 },
      { externalId: `look-${suffix}`, imageSha256: sha256(`other-${suffix}`) },
    ]);

    assert.equal(answers[0], null);
    assert.equal(answers[1]!.visitorId, visitor.id);
    assert.deepEqual(
      answers[1]!.faces.map((entry) => [entry.id, entry.modelId]),
      [[face.face.id, 'sface-128']],
    );
    assert.deepEqual(answers[2], { visitorId: visitor.id, faces: [] });
  });

  test('group visitor creation finds, creates and dedupes', async () => {
    const suffix = randomBytes(4).toString('hex');
    const known = await findOrCreateVisitor(db, `known-${suffix}`, 'Known');

    const found = await findOrCreateVisitors(db, [
      { externalId: `known-${suffix}`, name: 'Other name' },
      { externalId: `new-${suffix}`, name: 'New' },
      { externalId: `new-${suffix}`, name: 'Second name' },
    ]);

    assert.equal(found.size, 2);
    assert.deepEqual(found.get(`known-${suffix}`), { id: known.id, created: false });
    assert.equal(found.get(`new-${suffix}`)!.created, true);
    const again = await findOrCreateVisitor(db, `new-${suffix}`, 'ignored');
    assert.deepEqual(again, { id: found.get(`new-${suffix}`)!.id, created: false });
  });

  test('group visitor creation audits new visitors', async () => {
    const suffix = randomBytes(4).toString('hex');
    const known = await findOrCreateVisitor(db, `audit-known-${suffix}`, 'Known');
    const batch = await newBatch();

    const found = await findOrCreateVisitors(
      db,
      [
        { externalId: `audit-known-${suffix}`, name: 'Known' },
        { externalId: `audit-new-${suffix}`, name: 'New' },
      ],
      batch.id,
      { actor: { keyId: 'key-1' }, details: { batchId: batch.id } },
    );

    const created = found.get(`audit-new-${suffix}`)!;
    const entries = await listAudit(db, { targetType: 'visitor', targetId: created.id });
    assert.equal(entries.items.length, 1);
    assert.equal(entries.items[0]!.action, 'visitor.create');
    assert.equal(entries.items[0]!.keyId, 'key-1');
    assert.deepEqual(entries.items[0]!.details, { batchId: batch.id });
    const existing = await listAudit(db, { targetType: 'visitor', targetId: known.id });
    assert.equal(existing.items.length, 0, 'a visitor found, not created, gets no entry');
  });

  test('group visitor creation stops with its batch', async () => {
    const suffix = randomBytes(4).toString('hex');
    const known = await findOrCreateVisitor(db, `kept-${suffix}`, 'Kept');
    const batch = await newBatch();
    const running = await findOrCreateVisitors(
      db,
      [{ externalId: `during-${suffix}`, name: 'During' }],
      batch.id,
    );
    assert.equal(running.get(`during-${suffix}`)!.created, true);

    assert.equal((await cancelBatch(db, batch.id))!.cancelled, true);
    const cancelled = await findOrCreateVisitors(
      db,
      [
        { externalId: `kept-${suffix}`, name: 'Kept' },
        { externalId: `after-${suffix}`, name: 'After' },
      ],
      batch.id,
    );
    assert.deepEqual(cancelled.get(`kept-${suffix}`), { id: known.id, created: false });
    assert.equal(cancelled.has(`after-${suffix}`), false);
    const [row] = await db.sql`
      select count(*)::int as n from ${db.sql(db.schema)}.visitors
      where external_id = ${`after-${suffix}`}`;
    assert.equal(row!.n, 0, 'no visitor is created for a cancelled batch');
  });

  test('a copy of an image within a group store is skipped', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('s/1', 's/2', 's/copy'));
    const visitor = await findOrCreateVisitor(db, `group-${randomBytes(4).toString('hex')}`, 'G');
    const firstFace = makeFace(visitor.id);
    const secondFace = makeFace(visitor.id);
    const options = { replaceOtherModels: false, facesDetected: 1 };

    const results = await storeItemFaces(db, batch.id, [
      { key: 's/1', face: firstFace, options },
      { key: 's/2', face: secondFace, options: { ...options, reason: 'took the largest' } },
      { key: 's/copy', face: { ...firstFace }, options },
    ]);

    const [first, second, copy] = results as Exclude<(typeof results)[number], Error>[];
    assert.deepEqual(
      results.map((result) => (result instanceof Error ? result.message : result.status)),
      ['done', 'done', 'skipped'],
    );
    assert.equal(copy!.faceId, first!.faceId);
    assert.notEqual(second!.faceId, first!.faceId);
    assert.equal((await listFaces(db, visitor.id)).length, 2);
    const again = await storeItemFaces(db, batch.id, [{ key: 's/1', face: firstFace, options }]);
    assert.equal((again[0] as { recorded: boolean }).recorded, false);
  });

  test('after a cancel, nothing more is stored or recorded', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('x/1', 'x/2', 'x/3'));
    await claimBatchItems(db, batch.id, ['x/1', 'x/2', 'x/3']);
    const visitor = await findOrCreateVisitor(db, `cancel-${randomBytes(4).toString('hex')}`, 'C');
    const options = { replaceOtherModels: false, facesDetected: 1 };
    await storeItemFace(db, batch.id, 'x/1', makeFace(visitor.id), options);
    const before = await countBatchItems(db, batch.id);

    await cancelBatch(db, batch.id);
    const stored = await storeItemFaces(db, batch.id, [
      { key: 'x/2', face: makeFace(visitor.id), options },
      { key: 'x/3', face: makeFace(visitor.id), options },
    ]);
    const recorded = await recordItemOutcomes(db, batch.id, [
      { key: 'x/3', outcome: { status: 'no_face' } },
    ]);

    assert.deepEqual(
      stored.map((result) => (result instanceof Error ? result.message : result.recorded)),
      [false, false],
    );
    assert.equal(recorded.size, 0);
    assert.deepEqual(await countBatchItems(db, batch.id), before);
    assert.equal((await listFaces(db, visitor.id)).length, 1);
  });

  test('in a group store, a deleted visitor fails only its own item', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('d/1', 'd/2', 'd/3'));
    const suffix = randomBytes(4).toString('hex');
    const present = await findOrCreateVisitor(db, `present-${suffix}`, 'P');
    const removed = await findOrCreateVisitor(db, `removed-${suffix}`, 'R');
    await deleteVisitor(db, removed.id);
    const options = { replaceOtherModels: false, facesDetected: 1 };

    const results = await storeItemFaces(db, batch.id, [
      { key: 'd/1', face: makeFace(present.id), options },
      { key: 'd/2', face: makeFace(removed.id), options },
      { key: 'd/3', face: makeFace('not-a-uuid'), options },
    ]);

    assert.equal((results[0] as { status: string }).status, 'done');
    for (const failed of results.slice(1)) {
      assert.ok(failed instanceof FaceGateError);
      assert.equal(failed.code, 'NOT_FOUND');
    }
    assert.equal((await countBatchItems(db, batch.id)).facesStored, 1);
  });
});

describe('batch status', () => {
  test('planning, running, then completed when no item is left', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('s/1', 's/2'));
    const planning = await startBatchPlanning(db, batch.id, 'model-a');

    const beforePlanned = await completeBatchIfFinished(db, batch.id);
    await markBatchPlanned(db, batch.id, 3);
    await recordItemOutcome(db, batch.id, 's/1', { status: 'no_face' });
    const withOneLeft = await completeBatchIfFinished(db, batch.id);
    await recordItemOutcome(db, batch.id, 's/2', { status: 'no_face' });
    const completed = await completeBatchIfFinished(db, batch.id);
    const again = await completeBatchIfFinished(db, batch.id);

    assert.equal(batch.status, 'planning');
    assert.equal(planning?.modelId, 'model-a');
    assert.equal(beforePlanned, false);
    assert.equal(withOneLeft, false);
    assert.equal(completed, true);
    assert.equal(again, false);
    const stored = await getBatch(db, batch.id);
    assert.equal(stored?.status, 'completed');
    assert.equal(stored?.ignoredEntries, 3);
    assert.ok(stored?.finishedAt instanceof Date);
    assert.equal(await startBatchPlanning(db, batch.id, 'model-a'), null);
  });

  test('planning keeps the first model id', async () => {
    const batch = await newBatch();

    await startBatchPlanning(db, batch.id, 'model-a');
    const second = await startBatchPlanning(db, batch.id, 'model-b');

    assert.equal(second?.modelId, 'model-a');
  });

  test('cancelled batch gives no more items to claim', async () => {
    const batch = await newBatch();
    await upsertBatchItems(db, batch.id, items('c/1'));

    const cancelled = await cancelBatch(db, batch.id);
    const claimed = await claimBatchItem(db, batch.id, 'c/1');
    const cancelledAgain = await cancelBatch(db, batch.id);

    assert.equal(cancelled?.cancelled, true);
    assert.equal(cancelled?.batch.status, 'cancelled');
    assert.equal(claimed, null);
    assert.equal(cancelledAgain?.cancelled, false);
    assert.equal(await completeBatchIfFinished(db, batch.id), false);
    assert.ok(!(await listUnfinishedBatchIds(db)).includes(batch.id));
  });

  test('failed batch keeps its error', async () => {
    const batch = await newBatch();

    const failed = await failBatch(db, batch.id, { code: 'NOT_FOUND', message: 'no folder' });

    assert.equal(failed, true);
    const stored = await getBatch(db, batch.id);
    assert.equal(stored?.status, 'failed');
    assert.deepEqual(stored?.error, { code: 'NOT_FOUND', message: 'no folder' });
  });

  test('unknown or malformed batch id is null', async () => {
    assert.equal(await getBatch(db, 'not-a-uuid'), null);
    assert.equal(await getBatch(db, '00000000-0000-4000-8000-000000000000'), null);
    assert.equal(await cancelBatch(db, 'not-a-uuid'), null);
  });
});

describe('batch list', () => {
  test('pages newest first with counts', async () => {
    // A schema of its own: the other tests leave batches in the shared one.
    const own = await openTestDatabase();
    try {
      const source = { type: 'directory' as const, path: '/photos' };
      const created = [];
      for (let i = 0; i < 5; i += 1) {
        created.push(await createBatch(own, { source, mode: 'enrol', multipleFaces: 'skip' }));
      }
      // Two batches created in the same microsecond are ordered by id.
      await own.sql`
        update ${own.sql(own.schema)}.batches set created_at = '2026-01-01T00:00:00.000001Z'
        where id in ${own.sql([created[1]!.id, created[2]!.id])}`;
      await failBatch(own, created[3]!.id, { code: 'NOT_FOUND', message: 'no folder' });
      await upsertBatchItems(own, created[4]!.id, items('a/1.jpg', 'b/1.jpg', 'c/1.jpg'));
      await recordItemOutcome(own, created[4]!.id, 'b/1.jpg', { status: 'no_face' });

      const expected = (
        await own.sql<{ id: string }[]>`
          select id from ${own.sql(own.schema)}.batches order by created_at desc, id desc`
      ).map((row) => row.id);
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await listBatches(own, { limit: 2, cursor });
        seen.push(...page.items.map((batch) => batch.id));
        cursor = page.nextCursor;
      } while (cursor);
      assert.deepEqual(seen, expected);
      assert.equal(seen[0], created[4]!.id);

      const failed = await listBatches(own, { limit: 10, status: 'failed' });
      assert.deepEqual(
        failed.items.map((batch) => [batch.id, batch.error?.code]),
        [[created[3]!.id, 'NOT_FOUND']],
      );
      const newest = (await listBatches(own, { limit: 1 })).items[0]!;
      assert.deepEqual(
        [newest.counts.total, newest.counts.noFace, newest.counts.pending, newest.counts.done],
        [3, 1, 2, 1],
      );
      assert.deepEqual(newest.counts, await countBatchItems(own, newest.id));

      await assert.rejects(listBatches(own, { limit: 0 }), isFaceGateError('INVALID_REQUEST'));
      await assert.rejects(listBatches(own, { limit: 101 }), isFaceGateError('INVALID_REQUEST'));
      await assert.rejects(
        listBatches(own, { limit: 5, cursor: 'bm90LWEtY3Vyc29y' }),
        isFaceGateError('INVALID_REQUEST'),
      );
    } finally {
      await dropTestDatabase(own);
    }
  });
});

describe('table sources', () => {
  const sourceSchema = `batch_source_${randomBytes(6).toString('hex')}`;
  const png = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
    'base64',
  );

  before(async () => {
    const { sql } = db;
    await sql`create schema ${sql(sourceSchema)}`;
    await sql`create table ${sql(sourceSchema)}."Visitor" (
      "Id" integer primary key, "Full Name" text, photo bytea, photo_b64 text)`;
    await sql`insert into ${sql(sourceSchema)}."Visitor" values
      (1, 'Ada', ${png}, ${png.toString('base64')}),
      (2, 'Bob', null, ${`data:image/png;base64,${png.toString('base64')}`}),
      (3, 'Cy', ${Buffer.alloc(5000)}, '***not base64***')`;
    await sql`create table ${sql(sourceSchema)}.dup (id text, name text, photo bytea)`;
    await sql`insert into ${sql(sourceSchema)}.dup values ('x', 'X', ${png}), ('x', 'X2', ${png})`;
  });

  after(async () => {
    await db.sql`drop schema if exists ${db.sql(sourceSchema)} cascade`;
  });

  function visitorTable(overrides: Partial<TableSource> = {}): TableSource {
    return {
      type: 'table',
      table: `${sourceSchema}."Visitor"`,
      idColumn: '"Id"',
      nameColumn: '"Full Name"',
      imageColumn: 'photo',
      imageEncoding: 'bytea',
      ...overrides,
    };
  }

  test('table names parse with quoting and folding', () => {
    assert.deepEqual(parseTableName('public."Visitor"'), ['public', 'Visitor']);
    assert.deepEqual(parseTableName('Public.Visitor'), ['public', 'visitor']);
    assert.deepEqual(parseTableName('"Visitor Photos"'), ['Visitor Photos']);
    assert.equal(parseColumnName('"PhotoData"'), 'PhotoData');
    assert.equal(parseColumnName('photo_data'), 'photo_data');
  });

  const INJECTIONS = [
    'visitors; drop table faces',
    'visitors--',
    'public."Visitor"; select 1',
    '"a""b"',
    'a.b.c',
    '"x".y"',
    "visitors' or '1'='1",
    'visitors/**/',
    '',
    '1visitors',
    '"a.b"',
  ];

  for (const attempt of INJECTIONS) {
    test(`table name ${JSON.stringify(attempt)} is rejected`, () => {
      assert.throws(() => parseTableName(attempt), isFaceGateError('INVALID_REQUEST'));
    });
  }

  test('column injection attempts are rejected', () => {
    for (const attempt of [
      'id; drop table x',
      'id, pg_sleep(10)',
      '"id"" --"',
      'a.b',
      '(select 1)',
    ]) {
      assert.throws(() => parseColumnName(attempt), isFaceGateError('INVALID_REQUEST'), attempt);
    }
  });

  test('check accepts an existing table', async () => {
    await checkTableSource(db, visitorTable());
    await checkTableSource(db, visitorTable({ imageColumn: 'photo_b64', imageEncoding: 'base64' }));
  });

  test('check rejects missing objects and wrong types', async () => {
    const cases: Partial<TableSource>[] = [
      { table: `${sourceSchema}.missing` },
      { table: 'no_such_schema.visitor' },
      { imageColumn: 'nope' },
      { idColumn: 'Id' }, // unquoted folds to "id", which does not exist
      { imageColumn: 'photo_b64' }, // text column read as bytea
      { imageEncoding: 'base64' }, // bytea column read as base64
    ];
    for (const overrides of cases) {
      await assert.rejects(
        checkTableSource(db, visitorTable(overrides)),
        isFaceGateError('INVALID_REQUEST'),
        JSON.stringify(overrides),
      );
    }
  });

  test('rows stream in chunks', async () => {
    const chunks = [];
    for await (const chunk of streamTableSourceRows(db, visitorTable(), 2)) chunks.push(chunk);

    assert.deepEqual(
      chunks.map((chunk) => chunk.length),
      [2, 1],
    );
    assert.deepEqual(
      chunks
        .flat()
        .map((row) => [row.id, row.name, row.path])
        .sort(),
      [
        ['1', 'Ada', null],
        ['2', 'Bob', null],
        ['3', 'Cy', null],
      ],
    );
  });

  test('images read as bytea and base64', async () => {
    const bytea = await readTableImage(db, visitorTable(), '1', 10_000);
    const base64Source = visitorTable({ imageColumn: 'photo_b64', imageEncoding: 'base64' });
    const base64 = await readTableImage(db, base64Source, '1', 10_000);
    const dataUrl = await readTableImage(db, base64Source, '2', 10_000);

    assert.deepEqual(bytea, png);
    assert.deepEqual(base64, png);
    assert.deepEqual(dataUrl, png);
  });

  test('image read errors have codes', async () => {
    const base64Source = visitorTable({ imageColumn: 'photo_b64', imageEncoding: 'base64' });
    const dup: TableSource = {
      type: 'table',
      table: `${sourceSchema}.dup`,
      idColumn: 'id',
      nameColumn: 'name',
      imageColumn: 'photo',
      imageEncoding: 'bytea',
    };

    await assert.rejects(
      readTableImage(db, visitorTable(), '2', 10_000),
      isFaceGateError('IMAGE_EMPTY'),
    );
    await assert.rejects(
      readTableImage(db, visitorTable(), '3', 1000),
      isFaceGateError('IMAGE_TOO_LARGE'),
    );
    await assert.rejects(
      readTableImage(db, visitorTable(), '9', 1000),
      isFaceGateError('NOT_FOUND'),
    );
    await assert.rejects(
      readTableImage(db, base64Source, '3', 10_000),
      isFaceGateError('INVALID_REQUEST'),
    );
    await assert.rejects(readTableImage(db, dup, 'x', 10_000), isFaceGateError('INVALID_REQUEST'));
  });
});
