import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
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
import { createLogger } from '@facegate/logger';

import type { BatchContext } from '../src/batch/context.js';
import { extractItems } from '../src/batch/item.js';
import { VisionPool } from '../src/pool.js';

const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const faces = facesDir();

let db: Database;
let pool: VisionPool;
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
  context = {
    config: loadConfig({}),
    pool,
    db,
    // Planning is not part of these tests, so no queue is used.
    queues: undefined as never,
    logger: createLogger('batch-items-test', 'silent'),
    modelId,
  };
});

after(async () => {
  await pool?.close();
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
