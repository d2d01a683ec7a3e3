import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { test } from 'node:test';

import type { Database } from '@facegate/db';
import { deleteFace, deleteVisitor, maxChangeSeq } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';

import type { IndexServiceOptions } from '../src/index.js';
import { IndexService, embedderModel } from '../src/index.js';
import {
  OTHER_MODEL_ID,
  createRandom,
  dropTestDatabase,
  enrolGallery,
  enrolVisitor,
  makeTempDir,
  noisyCopy,
  openTestDatabase,
  randomUnitVector,
  silentLogger,
  waitUntil,
} from './helpers.js';

const MODEL = embedderModel('mobilefacenet');

interface Fixture {
  db: Database;
  indexDir: string;
  /** Creates a service that searches through the HNSW graph and hears of changes only by notification. */
  createService: (overrides?: Partial<IndexServiceOptions>) => IndexService;
}

/**
 * Creates a fresh schema and index folder. After the test every service is stopped first,
 * because a stopping service still saves into the folder, then both are removed.
 */
async function setUp(t: TestContext): Promise<Fixture> {
  const db = await openTestDatabase();
  const indexDir = await makeTempDir();
  const services: IndexService[] = [];
  t.after(async () => {
    await Promise.all(services.map((service) => service.stop()));
    await dropTestDatabase(db);
    await rm(indexDir, { recursive: true, force: true });
  });

  const createService = (overrides: Partial<IndexServiceOptions> = {}): IndexService => {
    const service = new IndexService({
      db,
      model: MODEL,
      indexDir,
      hnsw: { M: 16, efConstruction: 100, ef: 50, initialCapacity: 16, exactSearchMaxFaces: 0 },
      persistDelayMs: 20,
      feedPollIntervalMs: 600_000,
      logger: silentLogger,
      ...overrides,
    });
    services.push(service);
    return service;
  };
  return { db, indexDir, createService };
}

function topFace(service: IndexService, vector: Float32Array): number | undefined {
  return service.search(vector, 1)[0]?.faceId;
}

function isModelMismatch(error: unknown): boolean {
  assert.ok(error instanceof FaceGateError);
  assert.equal(error.code, 'MODEL_MISMATCH');
  assert.equal(error.status, 409);
  return true;
}

test('rebuild holds every stored face', async (t) => {
  const { db, createService } = await setUp(t);
  const gallery = await enrolGallery(db, createRandom(1), 6, 3);
  const service = createService();

  await service.start();

  const status = service.status();
  assert.equal(status.state, 'ready');
  assert.equal(status.rebuild.path, 'rebuilt');
  assert.equal(status.index?.size, 18);
  assert.equal(status.index?.visitors, 6);
  assert.equal(status.index?.modelId, MODEL.modelId);
  assert.equal(status.index?.lastSeq, await maxChangeSeq(db));
  for (const visitor of gallery) {
    for (const face of visitor.faces) {
      const [best] = service.search(face.vector, 1);
      assert.equal(best?.faceId, face.faceId);
      assert.equal(best?.visitorId, visitor.id);
    }
  }
});

test('rebuild of an empty database is ready', async (t) => {
  const { createService } = await setUp(t);
  const service = createService();

  await service.start();

  assert.equal(service.state, 'ready');
  assert.equal(service.status().index?.size, 0);
  assert.deepEqual(service.search(randomUnitVector(createRandom(2)), 3), []);
});

test('feed brings inserts and deletes', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(3);
  await enrolGallery(db, random, 3, 2);
  const service = createService();
  await service.start();

  const newcomer = await enrolVisitor(db, random, 'Newcomer', 1);
  const face = newcomer.faces[0]!;
  await waitUntil(() => topFace(service, face.vector) === face.faceId, 'the new face is found');
  assert.equal(service.status().index?.size, 7);

  await deleteFace(db, newcomer.id, face.faceId);
  await waitUntil(() => topFace(service, face.vector) !== face.faceId, 'the deleted face is gone');
  assert.equal(service.status().index?.size, 6);
  assert.equal(service.status().index?.visitors, 3);
  assert.equal(service.lastSeq, await maxChangeSeq(db));
});

test('deleting a visitor removes all its faces', async (t) => {
  const { db, createService } = await setUp(t);
  const gallery = await enrolGallery(db, createRandom(4), 3, 3);
  const service = createService();
  await service.start();
  const leaving = gallery[0]!;

  await deleteVisitor(db, leaving.id);
  await waitUntil(() => service.status().index?.size === 6, 'three faces are removed');

  const candidates = service.search(leaving.centre, 3);
  assert.ok(candidates.every((candidate) => candidate.visitorId !== leaving.id));
});

test('poll applies changes no notification announced', async (t) => {
  const { db, createService } = await setUp(t);
  const service = createService({ feedPollIntervalMs: 50 });
  await service.start();

  // Only the trigger on faces sends notifications, so this feed row arrives by polling alone.
  const [row] = await db.sql<[{ seq: string }]>`
    insert into ${db.sql(db.schema)}.face_changes (op, face_id, model_id)
    values ('delete', 12345, ${MODEL.modelId})
    returning seq`;
  await waitUntil(() => service.lastSeq === Number(row.seq), 'the poll applies the change');

  assert.equal(service.status().index?.size, 0);
});

test('waitForSeq catches up to a fresh insert', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(6);
  const service = createService();
  await service.start();

  const newcomer = await enrolVisitor(db, random, 'Fresh', 1);
  const seq = await maxChangeSeq(db);
  const reached = await service.waitForSeq(seq, 2000);

  assert.equal(reached, true);
  assert.equal(topFace(service, newcomer.faces[0]!.vector), newcomer.faces[0]!.faceId);
});

test('waitForSeq gives up on a future seq', async (t) => {
  const { createService } = await setUp(t);
  const service = createService();
  await service.start();

  const reached = await service.waitForSeq(service.lastSeq + 1000, 100);

  assert.equal(reached, false);
});

test('concurrent catch-ups apply each change once', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(7);
  const service = createService();
  await service.start();
  const gallery = await enrolGallery(db, random, 4, 2);
  await deleteFace(db, gallery[0]!.id, gallery[0]!.faces[0]!.faceId);

  await Promise.all(Array.from({ length: 10 }, () => service.catchUp()));

  assert.equal(service.lastSeq, await maxChangeSeq(db));
  assert.equal(service.status().index?.size, 7);
  assert.equal(service.status().index?.visitors, 4);
});

test('restart loads the saved index', async (t) => {
  const { db, indexDir, createService } = await setUp(t);
  const random = createRandom(8);
  const gallery = await enrolGallery(db, random, 8, 3);
  const probes = gallery.map((visitor) => noisyCopy(visitor.centre, random));
  const first = createService();
  await first.start();
  const answersBefore = probes.map((probe) => first.search(probe, 3));
  await first.stop();

  const second = createService();
  await second.start();

  assert.ok(existsSync(join(indexDir, 'manifest.json')));
  assert.equal(second.status().rebuild.path, 'loaded');
  assert.equal(second.status().index?.size, 24);
  assert.equal(second.lastSeq, first.lastSeq);
  assert.deepEqual(
    probes.map((probe) => second.search(probe, 3)),
    answersBefore,
  );
});

test('restart replays changes made while stopped', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(9);
  const gallery = await enrolGallery(db, random, 4, 2);
  const first = createService();
  await first.start();
  await first.stop();
  const newcomer = await enrolVisitor(db, random, 'While stopped', 1);
  await deleteVisitor(db, gallery[0]!.id);

  const second = createService();
  await second.start();

  assert.equal(second.status().rebuild.path, 'loaded');
  assert.equal(second.status().index?.size, 7);
  assert.equal(topFace(second, newcomer.faces[0]!.vector), newcomer.faces[0]!.faceId);
  assert.equal(second.lastSeq, await maxChangeSeq(db));
});

test('saved index ahead of the database is rebuilt', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(10);
  await enrolGallery(db, random, 5, 3);
  const first = createService();
  await first.start();
  await first.stop();
  // A reset database starts its feed again from seq 1.
  const resetDb = await openTestDatabase();
  t.after(() => dropTestDatabase(resetDb));
  const survivor = await enrolVisitor(resetDb, random, 'After reset', 1);

  const second = createService({ db: resetDb });
  await second.start();

  const status = second.status();
  assert.equal(status.rebuild.path, 'rebuilt');
  // A reset database gets a new instance id, so the saved index no longer belongs to it.
  assert.match(status.rebuild.reason ?? '', /another database or schema/);
  assert.equal(status.index?.size, 1);
  assert.equal(status.index?.lastSeq, 1);
  assert.equal(topFace(second, survivor.faces[0]!.vector), survivor.faces[0]!.faceId);
});

test('index saved from another schema is not served', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(12);
  await enrolVisitor(db, random, 'Other deployment', 1);
  const first = createService();
  await first.start();
  await first.stop();
  // Same feed position and face count as the saved index: only the instance id differs.
  const otherDb = await openTestDatabase();
  t.after(() => dropTestDatabase(otherDb));
  const own = await enrolVisitor(otherDb, random, 'Own visitor', 1);

  const second = createService({ db: otherDb });
  await second.start();

  const status = second.status();
  assert.equal(status.rebuild.path, 'rebuilt');
  assert.match(status.rebuild.reason ?? '', /another database or schema/);
  assert.equal(status.index?.size, 1);
  assert.equal(topFace(second, own.faces[0]!.vector), own.faces[0]!.faceId);
});

test('face count mismatch forces a rebuild', async (t) => {
  const { db, createService } = await setUp(t);
  await enrolGallery(db, createRandom(11), 3, 2);
  const first = createService();
  await first.start();
  await first.stop();
  // TRUNCATE fires no row triggers, so the feed does not show these deletions.
  await db.sql`truncate ${db.sql(db.schema)}.faces`;

  const second = createService();
  await second.start();

  assert.equal(second.status().rebuild.path, 'rebuilt');
  assert.match(second.status().rebuild.reason ?? '', /contains 6 faces .* 0 faces/);
  assert.equal(second.status().index?.size, 0);
});

test('corrupt saved index is rebuilt', async (t) => {
  const { db, indexDir, createService } = await setUp(t);
  await enrolGallery(db, createRandom(12), 3, 2);
  const first = createService();
  await first.start();
  await first.stop();
  await writeFile(join(indexDir, 'manifest.json'), '{"formatVersion": 1, "generation": ');

  const second = createService();
  await second.start();

  assert.equal(second.status().rebuild.path, 'rebuilt');
  assert.equal(second.status().index?.size, 6);
});

test('index of another model is rebuilt', async (t) => {
  const { db, createService } = await setUp(t);
  await enrolGallery(db, createRandom(13), 2, 2);
  const sface = createService({ model: embedderModel('sface') });
  await sface.start();
  await sface.stop();

  const service = createService();
  await service.start();

  assert.equal(service.status().rebuild.path, 'rebuilt');
  assert.match(service.status().rebuild.reason ?? '', /sface_2021dec/);
  assert.equal(service.status().index?.size, 4);
});

test('faces of another model make it refuse', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(14);
  const gallery = await enrolGallery(db, random, 2, 2);
  const stale = await enrolVisitor(db, random, 'Old model', 2, OTHER_MODEL_ID);
  const service = createService();

  await service.start();

  const status = service.status();
  assert.equal(status.state, 'refusing');
  assert.match(status.reason ?? '', /re-extract/);
  assert.deepEqual(status.otherModels, { [OTHER_MODEL_ID]: 2 });
  assert.equal(status.index?.size, 4);
  assert.throws(() => service.assertServing(), isModelMismatch);
  assert.throws(() => service.search(gallery[0]!.centre, 1), isModelMismatch);

  await deleteVisitor(db, stale.id);
  await waitUntil(() => service.state === 'ready', 'the refusal ends');
  assert.deepEqual(service.status().otherModels, {});
  assert.equal(service.status().reason, undefined);
  assert.equal(service.search(gallery[0]!.centre, 1)[0]?.visitorId, gallery[0]!.id);
});

test('a new face of another model starts a refusal', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(15);
  await enrolGallery(db, random, 2, 1);
  const service = createService();
  await service.start();

  await enrolVisitor(db, random, 'Wrong model', 1, OTHER_MODEL_ID);
  await waitUntil(() => service.state === 'refusing', 'the matcher refuses');

  assert.deepEqual(service.status().otherModels, { [OTHER_MODEL_ID]: 1 });
  assert.equal(service.status().index?.size, 2);
});

test('changes are saved after the persist delay', async (t) => {
  const { db, createService } = await setUp(t);
  const random = createRandom(16);
  const service = createService({ persistDelayMs: 50 });
  await service.start();
  const savedAt = service.status().index?.lastPersistedAt;

  await enrolVisitor(db, random, 'Saved', 1);
  await waitUntil(
    () => service.status().index?.lastPersistedAt !== savedAt && service.lastSeq === 1,
    'the change is saved',
  );
  await service.stop();

  const restarted = createService();
  await restarted.start();
  assert.equal(restarted.status().rebuild.path, 'loaded');
  assert.equal(restarted.status().index?.size, 1);
});

test('stop is idempotent', async (t) => {
  const { indexDir, createService } = await setUp(t);
  const service = createService();
  await service.start();

  await Promise.all([service.stop(), service.stop()]);
  await service.stop();

  assert.ok(existsSync(join(indexDir, 'manifest.json')));
});
