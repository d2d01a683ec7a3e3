import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Reply } from '@facegate/contracts';
import { createRedis } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { createDatabase, createVisitor, insertFace, migrate } from '@facegate/db';
import type { Logger } from '@facegate/logger';
import { createLogger } from '@facegate/logger';
import type { Redis } from 'ioredis';

export const DATABASE_URL = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = 'redis://127.0.0.1:6379';
export const DIM = 128;
export const MODEL_ID = 'mobilefacenet_foamliu_128d';
export const OTHER_MODEL_ID = 'sface_2021dec';

export const silentLogger: Logger = createLogger('matcher-test', 'silent');

/** Returns a name that no other test file or run uses, for schemas and Redis prefixes. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/** Opens a database on a fresh migrated schema. */
export async function openTestDatabase(): Promise<Database> {
  const db = createDatabase({ url: DATABASE_URL, schema: uniqueName('matcher_test') });
  await migrate(db);
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

export function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'matcher-test-'));
}

/** Seeded pseudo-random numbers in [0, 1) (mulberry32), so galleries are the same on every run. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function gaussian(random: () => number): number {
  const u = Math.max(random(), Number.EPSILON);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

function normalise(values: Float32Array): Float32Array {
  let squaredNorm = 0;
  for (const value of values) squaredNorm += value * value;
  const norm = Math.sqrt(squaredNorm);
  return values.map((value) => value / norm);
}

/** Returns a random direction, as unrelated to every gallery visitor as two strangers' features are. */
export function randomUnitVector(random: () => number): Float32Array {
  return normalise(Float32Array.from({ length: DIM }, () => gaussian(random)));
}

/**
 * Another photo of the same person: the centre plus Gaussian noise, normalised. With the
 * default noise two photos of one visitor have a cosine similarity of about 0.7, well
 * above the identification threshold, while strangers stay near 0.
 */
export function noisyCopy(centre: Float32Array, random: () => number, noise = 0.06): Float32Array {
  return normalise(centre.map((value) => value + noise * gaussian(random)));
}

export interface EnrolledFace {
  faceId: number;
  vector: Float32Array;
}

export interface EnrolledVisitor {
  id: string;
  name: string;
  externalId: string;
  centre: Float32Array;
  faces: EnrolledFace[];
}

/** Creates a visitor with `faceCount` faces of `modelId` around a random centre. */
export async function enrolVisitor(
  db: Database,
  random: () => number,
  name: string,
  faceCount: number,
  modelId = MODEL_ID,
): Promise<EnrolledVisitor> {
  const externalId = uniqueName(name.toLowerCase());
  const visitor = await createVisitor(db, { name, externalId });
  const centre = randomUnitVector(random);
  const faces: EnrolledFace[] = [];
  for (let i = 0; i < faceCount; i++) {
    const vector = noisyCopy(centre, random);
    const { face } = await insertFace(db, {
      visitorId: visitor.id,
      modelId,
      embedding: vector,
      detectionScore: 0.95,
      box: { x: 10, y: 10, width: 100, height: 120 },
      faceSize: 100,
      imageSha256: createHash('sha256').update(randomBytes(16)).digest(),
    });
    faces.push({ faceId: face.id, vector });
  }
  return { id: visitor.id, name, externalId, centre, faces };
}

/** Enrols `visitorCount` visitors named "Visitor 1", "Visitor 2"... */
export async function enrolGallery(
  db: Database,
  random: () => number,
  visitorCount: number,
  facesPerVisitor: number,
): Promise<EnrolledVisitor[]> {
  const visitors: EnrolledVisitor[] = [];
  for (let i = 1; i <= visitorCount; i++) {
    visitors.push(await enrolVisitor(db, random, `Visitor ${i}`, facesPerVisitor));
  }
  return visitors;
}

/** Polls `condition` until it holds; throws after `timeoutMs` so a broken expectation fails instead of hanging. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  description: string,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${description}`);
}

/**
 * Subscribes to a gateway's reply channel, records each reply in `replies` by correlation
 * id and counts them in `counts`. Returns the subscriber connection, for the caller to quit.
 */
export async function subscribeReplies(
  channel: string,
  replies: Map<string, Reply>,
  counts = new Map<string, number>(),
): Promise<Redis> {
  const subscriber = createRedis(REDIS_URL);
  await waitUntil(() => subscriber.status === 'ready', 'the Redis subscriber is ready');
  subscriber.on('message', (_channel: string, message: string) => {
    const reply = JSON.parse(message) as Reply;
    replies.set(reply.correlationId, reply);
    counts.set(reply.correlationId, (counts.get(reply.correlationId) ?? 0) + 1);
  });
  await subscriber.subscribe(channel);
  return subscriber;
}
