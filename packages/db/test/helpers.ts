import { createHash, randomBytes } from 'node:crypto';

import type { Database, DatabaseOptions, NewFace } from '../src/index.js';
import { createDatabase, migrate } from '../src/index.js';

export const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';

/** Returns a schema name that no other test file or run uses. */
export function randomSchemaName(): string {
  return `facegate_test_${randomBytes(6).toString('hex')}`;
}

/** Opens a database on a fresh random schema; pass `migrated: false` to skip migrations. */
export async function openTestDatabase(
  options: Partial<DatabaseOptions> & { migrated?: boolean } = {},
): Promise<Database> {
  const { migrated = true, ...databaseOptions } = options;
  const db = createDatabase({ url: DATABASE_URL, schema: randomSchemaName(), ...databaseOptions });
  if (migrated) await migrate(db);
  return db;
}

/** Drops the test schema and closes the pool. */
export async function dropTestDatabase(db: Database): Promise<void> {
  try {
    await db.sql`drop schema if exists ${db.sql(db.schema)} cascade`;
  } finally {
    await db.close();
  }
}

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Deterministic embedding values derived from `seed`, so tests can compare them. */
export function makeEmbedding(seed: number, dim = 128): Float32Array {
  const embedding = new Float32Array(dim);
  for (let i = 0; i < dim; i++) embedding[i] = Math.sin(seed * 1000 + i) / (i + 1);
  return embedding;
}

let imageCounter = 0;

/** Builds a valid face for `visitorId`, with a new image hash on each call unless one is given. */
export function makeFace(visitorId: string, overrides: Partial<NewFace> = {}): NewFace {
  imageCounter += 1;
  return {
    visitorId,
    modelId: 'sface-128',
    embedding: makeEmbedding(imageCounter),
    detectionScore: 0.93,
    box: { x: 10, y: 20, width: 110, height: 130 },
    faceSize: 110,
    imageSha256: sha256(`image-${imageCounter}-${randomBytes(4).toString('hex')}`),
    ...overrides,
  };
}

/** Bytes of a Float32Array, for bit-for-bit comparisons (NaN and -0 compare as bits). */
export function bytesOf(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

/**
 * Polls `condition` until it holds. Throws after `maxAttempts` polls so a broken
 * expectation fails the test instead of hanging it.
 */
export async function waitUntil(
  condition: () => Promise<boolean> | boolean,
  description: string,
  maxAttempts = 200,
  intervalMs = 25,
): Promise<void> {
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out waiting until ${description}`);
}
