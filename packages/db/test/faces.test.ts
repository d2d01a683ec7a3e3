import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import type { Database, FaceEmbedding } from '../src/index.js';
import {
  countFacesByModel,
  createVisitor,
  deleteFace,
  getEmbedding,
  insertFace,
  listFaces,
  streamEmbeddings,
} from '../src/index.js';
import { bytesOf, dropTestDatabase, makeFace, openTestDatabase, sha256 } from './helpers.js';

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

test('insertFace stores a face with its fields', async () => {
  const visitor = await createVisitor(db, { name: 'Enrolled' });
  const input = makeFace(visitor.id);

  const { face, created } = await insertFace(db, input);

  assert.equal(created, true);
  assert.ok(Number.isSafeInteger(face.id));
  assert.ok(face.id > 0);
  assert.equal(face.visitorId, visitor.id);
  assert.equal(face.modelId, input.modelId);
  assert.equal(face.dim, 128);
  assert.equal(face.detectionScore, 0.93);
  assert.deepEqual(face.box, input.box);
  assert.equal(face.faceSize, 110);
  assert.deepEqual(face.imageSha256, input.imageSha256);
});

test('insertFace twice with one image stores one row', async () => {
  const visitor = await createVisitor(db, { name: 'Twice' });
  const input = makeFace(visitor.id);

  const first = await insertFace(db, input);
  const second = await insertFace(db, { ...input, detectionScore: 0.5 });

  assert.equal(first.created, true);
  assert.equal(second.created, false);
  assert.deepEqual(second.face, first.face);
  assert.equal((await listFaces(db, visitor.id)).length, 1);
});

test('insertFace keeps one image for another model', async () => {
  const visitor = await createVisitor(db, { name: 'Two models' });
  const input = makeFace(visitor.id);

  const first = await insertFace(db, input);
  const second = await insertFace(db, { ...input, modelId: 'arcface-512' });

  assert.equal(second.created, true);
  assert.notEqual(second.face.id, first.face.id);
});

test('insertFace for a missing visitor is NOT_FOUND', async () => {
  const missing = '00000000-0000-4000-8000-000000000000';

  await assert.rejects(insertFace(db, makeFace(missing)), (error) => {
    assert.ok(error instanceof FaceGateError);
    assert.equal(error.code, 'NOT_FOUND');
    assert.equal(error.status, 404);
    assert.match(error.message, new RegExp(missing));
    return true;
  });
  await assert.rejects(insertFace(db, makeFace('not-a-uuid')), isFaceGateError('NOT_FOUND'));
});

test('insertFace rejects malformed fields', async () => {
  const visitor = await createVisitor(db, { name: 'Malformed' });
  const invalid = [
    makeFace(visitor.id, { modelId: '' }),
    makeFace(visitor.id, { imageSha256: Buffer.alloc(31) }),
    makeFace(visitor.id, { embedding: new Float32Array(0) }),
    makeFace(visitor.id, { embedding: Float32Array.of(1, Number.NaN) }),
    makeFace(visitor.id, { detectionScore: Number.POSITIVE_INFINITY }),
    makeFace(visitor.id, { faceSize: -1 }),
    makeFace(visitor.id, { box: { x: 0, y: 0, width: -5, height: 10 } }),
  ];

  for (const input of invalid) {
    await assert.rejects(insertFace(db, input), isFaceGateError('INVALID_REQUEST'));
  }
  assert.equal((await listFaces(db, visitor.id)).length, 0);
});

test('insertFace accepts null optional fields', async () => {
  const visitor = await createVisitor(db, { name: 'Sparse' });

  const { face } = await insertFace(
    db,
    makeFace(visitor.id, { detectionScore: null, box: null, faceSize: null }),
  );

  assert.equal(face.detectionScore, null);
  assert.equal(face.box, null);
  assert.equal(face.faceSize, null);
});

test('embedding round trip is bit for bit', async () => {
  const visitor = await createVisitor(db, { name: 'Round trip' });
  const embedding = Float32Array.of(
    0,
    -0,
    1 / 3,
    -1.5e-45, // smallest subnormal
    3.4028234663852886e38, // largest float32
    -3.4028234663852886e38,
    1.1754943508222875e-38, // smallest normal
    Math.PI,
  );

  const { face } = await insertFace(db, makeFace(visitor.id, { embedding }));
  const stored = await getEmbedding(db, face.id);

  assert.ok(stored);
  assert.deepEqual(bytesOf(stored.embedding), bytesOf(embedding));
  assert.equal(stored.faceId, face.id);
  assert.equal(stored.visitorId, visitor.id);
  assert.equal(stored.modelId, face.modelId);
});

test('embedding is stored as float32 little-endian', async () => {
  const visitor = await createVisitor(db, { name: 'Byte order' });
  const { face } = await insertFace(
    db,
    makeFace(visitor.id, { embedding: Float32Array.of(1, -2) }),
  );

  const rows = await db.sql<{ embedding: Buffer }[]>`
    select embedding from ${db.sql(db.schema)}.faces where id = ${face.id}`;

  assert.equal(rows[0]?.embedding.toString('hex'), '0000803f000000c0');
});

test('getEmbedding returns null for unknown ids', async () => {
  assert.equal(await getEmbedding(db, 9_000_000_000), null);
  assert.equal(await getEmbedding(db, -1), null);
  assert.equal(await getEmbedding(db, 1.5), null);
});

test('listFaces lists a visitor faces without embeddings', async () => {
  const visitor = await createVisitor(db, { name: 'Lister' });
  const other = await createVisitor(db, { name: 'Other lister' });
  const first = await insertFace(db, makeFace(visitor.id));
  const second = await insertFace(db, makeFace(visitor.id));
  await insertFace(db, makeFace(other.id));

  const faces = await listFaces(db, visitor.id);

  assert.deepEqual(
    faces.map((face) => face.id),
    [first.face.id, second.face.id],
  );
  assert.ok(faces.every((face) => !('embedding' in face)));
  assert.deepEqual(await listFaces(db, 'not-a-uuid'), []);
});

test('deleteFace removes only the visitor own face', async () => {
  const owner = await createVisitor(db, { name: 'Owner' });
  const stranger = await createVisitor(db, { name: 'Stranger' });
  const { face } = await insertFace(db, makeFace(owner.id));

  const byStranger = await deleteFace(db, stranger.id, face.id);
  const byOwner = await deleteFace(db, owner.id, face.id);
  const again = await deleteFace(db, owner.id, face.id);

  assert.equal(byStranger, false);
  assert.equal(byOwner, true);
  assert.equal(again, false);
  assert.equal(await getEmbedding(db, face.id), null);
  assert.equal(await deleteFace(db, 'not-a-uuid', face.id), false);
});

test('faces reject updates', async () => {
  const visitor = await createVisitor(db, { name: 'Immutable' });
  const { face } = await insertFace(db, makeFace(visitor.id));

  await assert.rejects(
    db.sql`update ${db.sql(db.schema)}.faces set model_id = 'other' where id = ${face.id}`,
    /immutable/,
  );
});

test('embedding byte length must match dim', async () => {
  const visitor = await createVisitor(db, { name: 'Checked' });

  await assert.rejects(
    db.sql`
      insert into ${db.sql(db.schema)}.faces (visitor_id, model_id, dim, embedding, image_sha256)
      values (${visitor.id}, 'm', 4, ${Buffer.alloc(12)}, ${sha256('short')})`,
    /check constraint/,
  );
});

test('countFacesByModel and streamEmbeddings', async () => {
  const modelDb = await openTestDatabase();
  try {
    const visitor = await createVisitor(modelDb, { name: 'Streamed' });
    const inserted: FaceEmbedding[] = [];
    for (let i = 0; i < 7; i++) {
      const input = makeFace(visitor.id, { modelId: 'model-a' });
      const { face } = await insertFace(modelDb, input);
      inserted.push({ faceId: face.id, visitorId: visitor.id, embedding: input.embedding });
    }
    for (let i = 0; i < 2; i++) {
      await insertFace(modelDb, makeFace(visitor.id, { modelId: 'model-b' }));
    }

    const counts = await countFacesByModel(modelDb);
    const batches: FaceEmbedding[][] = [];
    for await (const batch of streamEmbeddings(modelDb, 'model-a', 3)) batches.push(batch);

    assert.deepEqual([...counts.entries()].sort(), [
      ['model-a', 7],
      ['model-b', 2],
    ]);
    assert.deepEqual(
      batches.map((batch) => batch.length),
      [3, 3, 1],
    );
    const streamed = batches.flat();
    assert.deepEqual(
      streamed.map((item) => item.faceId),
      inserted.map((item) => item.faceId),
    );
    for (const [index, item] of streamed.entries()) {
      assert.equal(item.visitorId, visitor.id);
      assert.deepEqual(bytesOf(item.embedding), bytesOf(inserted[index]!.embedding));
    }
  } finally {
    await dropTestDatabase(modelDb);
  }
});

test('streamEmbeddings stops early and frees its connection', async () => {
  const visitor = await createVisitor(db, { name: 'Early stop' });
  for (let i = 0; i < 4; i++) {
    await insertFace(db, makeFace(visitor.id, { modelId: 'model-early' }));
  }

  let batchCount = 0;
  for await (const batch of streamEmbeddings(db, 'model-early', 1)) {
    batchCount += 1;
    assert.equal(batch.length, 1);
    break;
  }
  const afterStop = await listFaces(db, visitor.id);

  assert.equal(batchCount, 1);
  assert.equal(afterStop.length, 4);
});

test('streamEmbeddings of an unknown model yields nothing', async () => {
  const batches: FaceEmbedding[][] = [];

  for await (const batch of streamEmbeddings(db, 'no-such-model', 10)) batches.push(batch);

  assert.deepEqual(batches, []);
});
