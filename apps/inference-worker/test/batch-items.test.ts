import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { FACES_MISSING, facesDir, loadConfig } from '@facegate/config';
import {
  type Database,
  claimBatchItems,
  createBatch,
  createDatabase,
  listBatchItems,
  listFacesByImage,
  migrate,
  upsertBatchItems,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import { createLogger } from '@facegate/logger';

import type { BatchContext } from '../src/batch/context.js';
import { FileReader } from '../src/batch/file-reader.js';
import { extractItems } from '../src/batch/item.js';
import { VisionPool } from '../src/pool.js';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const faces = facesDir();

let db: Database;
let pool: VisionPool;
let files: FileReader;
let context: BatchContext;

before(async () => {
  if (!faces) return;
  db = createDatabase({
    url: DATABASE_URL,
    schema: `facegate_test_${randomBytes(6).toString('hex')}`,
  });
  await migrate(db);
  pool = new VisionPool(1);
  const { modelId } = await pool.warmUp();
  files = new FileReader();
  context = {
    config: loadConfig({}),
    pool,
    files,
    db,
    // Planning is not part of these tests, so no queue is used.
    queues: undefined as never,
    logger: createLogger('batch-items-test', 'silent'),
    modelId,
  };
});

after(async () => {
  await pool?.close();
  await files?.close();
  if (db) {
    await db.sql`drop schema if exists ${db.sql(db.schema)} cascade`;
    await db.close();
  }
});

/** Photos of one LFW person as batch items: key `<person>/<file>`, externalId the person. */
async function personItems(person: string) {
  const dir = join(faces!, 'lfw', person);
  const files = (await readdir(dir)).sort().slice(0, 6);
  return files.map((file) => ({
    key: `${person}/${file}`,
    externalId: person,
    name: person.replaceAll('_', ' '),
    locator: join(dir, file),
  }));
}

for (const [label, keptBytes] of [
  ['kept in memory', undefined],
  ['read again before analysis', 0],
] as const) {
  test(`a job's images ${label} are stored under their own hashes`, async (t) => {
    if (!faces) return t.skip(FACES_MISSING);
    const batch = await createBatch(db, {
      source: { type: 'directory', path: join(faces, 'lfw') },
      mode: 'enrol',
      multipleFaces: 'largest',
    });
    const person = keptBytes === 0 ? 'Colin_Powell' : 'Tony_Blair';
    const items = await personItems(person);
    await upsertBatchItems(db, batch.id, items);
    const claimed = await claimBatchItems(
      db,
      batch.id,
      items.map((item) => item.key),
    );

    const failures = await extractItems(context, claimed, keptBytes);

    assert.deepEqual(failures, []);
    const page = await listBatchItems(db, batch.id, { limit: 100 });
    assert.deepEqual(
      page.items.map((item) => item.status),
      items.map(() => 'done'),
    );
    for (const item of items) {
      const bytes = await readFile(item.locator);
      const sha = createHash('sha256').update(bytes).digest();
      const stored = page.items.find((entry) => entry.key === item.key)!;
      const facesOfImage = await listFacesByImage(
        db,
        (
          await db.sql<{ id: string }[]>`
          select id from ${db.sql(db.schema)}.visitors where external_id = ${person}`
        )[0]!.id,
        sha,
      );
      assert.deepEqual(
        facesOfImage.map((face) => face.id),
        [stored.faceId],
      );
    }
  });
}

test('analyzeEach gives a corrupt image its own error', async (t) => {
  if (!faces) return t.skip(FACES_MISSING);
  const good = await readFile(join(faces, 'lfw', 'Tony_Blair', 'Tony_Blair_0001.jpg'));
  const corrupt = good.subarray(0, 600);

  const results = await pool.analyzeEach([good, corrupt, good], {});

  assert.equal(results.length, 3);
  const [first, broken, last] = [results[0]!, results[1]!, results[2]!];
  assert.ok(!(first instanceof Error));
  assert.ok(first.faces.length > 0);
  assert.ok(broken instanceof FaceGateError);
  assert.equal(broken.code, 'IMAGE_CORRUPT');
  assert.ok(!(last instanceof Error));
  assert.deepEqual(last.faces[0]!.embedding, first.faces[0]!.embedding);
});

test('a corrupt file fails its own item and the job stores the others', async (t) => {
  if (!faces) return t.skip(FACES_MISSING);
  const dir = await mkdtemp(join(tmpdir(), 'facegate-batch-items-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const items = (await personItems('George_W_Bush')).slice(0, 3);
  const corruptPath = join(dir, 'corrupt.jpg');
  await writeFile(corruptPath, (await readFile(items[0]!.locator)).subarray(0, 600));
  items.splice(1, 0, {
    key: 'George_W_Bush/corrupt.jpg',
    externalId: 'George_W_Bush',
    name: 'George W Bush',
    locator: corruptPath,
  });
  const batch = await createBatch(db, {
    source: { type: 'directory', path: dir },
    mode: 'enrol',
    multipleFaces: 'largest',
  });
  await upsertBatchItems(db, batch.id, items);
  const claimed = await claimBatchItems(
    db,
    batch.id,
    items.map((item) => item.key),
  );

  const failures = await extractItems(context, claimed);

  assert.deepEqual(
    failures.map(({ item, error }) => [item.key, (error as FaceGateError).code]),
    [['George_W_Bush/corrupt.jpg', 'IMAGE_CORRUPT']],
  );
  const page = await listBatchItems(db, batch.id, { limit: 100 });
  assert.deepEqual(
    page.items.map((item) => [item.key, item.status]).sort(),
    [
      ['George_W_Bush/George_W_Bush_0001.jpg', 'done'],
      ['George_W_Bush/George_W_Bush_0002.jpg', 'done'],
      ['George_W_Bush/George_W_Bush_0003.jpg', 'done'],
      // Recording a failure is the batch worker's part, after the job's other items.
      ['George_W_Bush/corrupt.jpg', 'pending'],
    ].sort(),
  );
});
