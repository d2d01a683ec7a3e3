/**
 * End to end: the real matcher process against PostgreSQL and Redis, driven the way
 * the inference workers and the gateway drive it (match jobs in, replies on pub/sub).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';

import type { Heartbeat, MatchJob, RecognizeResult, Reply } from '@facegate/contracts';
import {
  addMatchJob,
  defaultIdentifyThreshold,
  createRedis,
  encodeVector,
  keyNames,
  readHeartbeats,
} from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { maxChangeSeq } from '@facegate/db';
import type { Redis } from 'ioredis';

import type { IndexStatus } from '../src/index.js';
import type { EnrolledVisitor } from './helpers.js';
import {
  DATABASE_URL,
  MODEL_ID,
  OTHER_MODEL_ID,
  REDIS_URL,
  createRandom,
  dropTestDatabase,
  enrolGallery,
  enrolVisitor,
  makeTempDir,
  noisyCopy,
  openTestDatabase,
  randomUnitVector,
  subscribeReplies,
  uniqueName,
  waitUntil,
} from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const GATEWAY_ID = 'gateway-test';
const REPLY_TIMEOUT_MS = 10_000;
const START_TIMEOUT_MS = 20_000;

const prefix = uniqueName('matcher_e2e');
const keys = keyNames(prefix);
const random = createRandom(301);
const children = new Set<ChildProcess>();
const replies = new Map<string, Reply>();
/** Replies received per correlation id, to tell a retried request from one replied to once. */
const replyCounts = new Map<string, number>();

let db: Database;
let indexDir: string;
let redis: Redis;
let subscriber: Redis;
let gallery: EnrolledVisitor[];

interface Matcher {
  child: ChildProcess;
  /** stdout and stderr so far, shown when an expectation fails. */
  output: () => string;
  exited: Promise<number | null>;
}

function spawnMatcher(env: Record<string, string> = {}): Matcher {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      ...process.env,
      DATABASE_URL,
      DATABASE_SCHEMA: db.schema,
      REDIS_URL,
      QUEUE_PREFIX: prefix,
      INDEX_DIR: indexDir,
      FACE_EMBEDDER: 'mobilefacenet',
      IDENTIFY_THRESHOLD: '',
      HEARTBEAT_INTERVAL_MS: '200',
      FEED_POLL_INTERVAL_MS: '500',
      INDEX_PERSIST_DELAY_MS: '100',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => {
    children.delete(child);
    return code as number | null;
  });
  return { child, output: () => output, exited };
}

async function heartbeatOf(matcher: Matcher): Promise<Heartbeat | undefined> {
  const heartbeats = await readHeartbeats(redis, keys, 'matcher');
  return heartbeats.find((heartbeat) => heartbeat.pid === matcher.child.pid);
}

async function waitForHeartbeat(
  matcher: Matcher,
  condition: (heartbeat: Heartbeat) => boolean,
  description: string,
): Promise<Heartbeat> {
  let found: Heartbeat | undefined;
  try {
    await waitUntil(
      async () => {
        if (matcher.child.exitCode !== null) throw new Error('the matcher exited');
        found = await heartbeatOf(matcher);
        return found !== undefined && condition(found);
      },
      description,
      START_TIMEOUT_MS,
      50,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; matcher output:\n${matcher.output()}`);
  }
  return found!;
}

function waitForReady(matcher: Matcher): Promise<Heartbeat> {
  return waitForHeartbeat(
    matcher,
    (heartbeat) => heartbeat.ready,
    'the matcher heartbeat says ready',
  );
}

async function stopMatcher(matcher: Matcher): Promise<number | null> {
  matcher.child.kill('SIGTERM');
  return matcher.exited;
}

function matchJob(vector: Float32Array, params: Partial<MatchJob['params']> = {}): MatchJob {
  return {
    kind: 'identify',
    correlationId: randomUUID(),
    replyTo: keys.replyChannel(GATEWAY_ID),
    requestId: randomUUID(),
    modelId: MODEL_ID,
    image: { width: 640, height: 480 },
    faces: [
      {
        box: { x: 100, y: 80, width: 120, height: 150 },
        score: 0.97,
        landmarks: [
          [140, 130],
          [190, 130],
          [165, 160],
          [145, 190],
          [185, 190],
        ],
        embedding: encodeVector(vector),
      },
    ],
    params: { topK: 3, minSeq: 0, ...params },
    timings: { decodeMs: 3, detectMs: 20, embedMs: 9 },
  };
}

async function request(job: MatchJob): Promise<Reply> {
  await addMatchJob(redis, keys, job);
  await waitUntil(
    () => replies.has(job.correlationId),
    `the reply to ${job.correlationId} arrives`,
    REPLY_TIMEOUT_MS,
  );
  return replies.get(job.correlationId)!;
}

function resultOf(reply: Reply): RecognizeResult {
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return reply.result as RecognizeResult;
}

before(async () => {
  db = await openTestDatabase();
  indexDir = await makeTempDir();
  gallery = await enrolGallery(db, random, 5, 3);
  redis = createRedis(REDIS_URL);
  await waitUntil(() => redis.status === 'ready', 'Redis is ready');
  subscriber = await subscribeReplies(keys.replyChannel(GATEWAY_ID), replies, replyCounts);
});

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  const leftover = await redis.keys(`${prefix}:*`);
  if (leftover.length > 0) await redis.del(...leftover);
  await subscriber.quit();
  await redis.quit();
  await dropTestDatabase(db);
  await rm(indexDir, { recursive: true, force: true });
});

test('invalid configuration exits 2', { timeout: START_TIMEOUT_MS }, async () => {
  const matcher = spawnMatcher({ HNSW_M: 'many' });

  const code = await matcher.exited;

  assert.equal(code, 2);
  assert.match(matcher.output(), /HNSW_M/);
});

test('matcher serves, stops and restarts', { timeout: 60_000 }, async (t) => {
  const visitor = gallery[1]!;
  const probe = noisyCopy(visitor.centre, random);
  let firstAnswer: RecognizeResult | undefined;
  let matcher = spawnMatcher();

  await t.test('heartbeat reports the rebuilt index', async () => {
    const heartbeat = await waitForReady(matcher);

    const detail = heartbeat.detail as IndexStatus;
    assert.equal(detail.state, 'ready');
    assert.equal(detail.rebuild.path, 'rebuilt');
    assert.equal(detail.index?.size, 15);
    assert.equal(detail.index?.visitors, 5);
    assert.equal(detail.index?.modelId, MODEL_ID);
    assert.deepEqual(detail.otherModels, {});
    assert.equal(detail.scoring, 'fused');
    assert.equal((heartbeat.detail as { identifyThreshold?: number }).identifyThreshold, 0.42);
  });

  await t.test('identify names the enrolled visitor', async () => {
    const job = matchJob(probe);

    const result = resultOf(await request(job));

    assert.equal(result.modelId, MODEL_ID);
    assert.equal(result.threshold, defaultIdentifyThreshold('mobilefacenet_foamliu_128d', 'fused'));
    const face = result.faces[0]!;
    assert.equal(face.match?.visitorId, visitor.id);
    assert.equal(face.match?.name, visitor.name);
    assert.equal(face.match?.externalId, visitor.externalId);
    assert.deepEqual(face.box, job.faces[0]!.box);
    assert.equal(face.candidates.length, 3);
    assert.equal(result.timings.detectMs, 20);
    assert.equal(typeof result.timings.matchQueueWaitMs, 'number');
    assert.equal(typeof result.timings.matchMs, 'number');
    firstAnswer = result;
  });

  await t.test('stranger gets match null', async () => {
    const result = resultOf(await request(matchJob(randomUnitVector(random))));

    assert.equal(result.faces[0]!.match, null);
  });

  await t.test('minSeq of a fresh face is honoured', async () => {
    const newcomer = await enrolVisitor(db, random, 'Newcomer', 1);
    const seq = await maxChangeSeq(db);

    const result = resultOf(await request(matchJob(newcomer.faces[0]!.vector, { minSeq: seq })));

    assert.equal(result.faces[0]!.match?.visitorId, newcomer.id);
    assert.ok(result.faces[0]!.match.similarity > 0.999);
  });

  await t.test('invalid job is answered and not retried', async () => {
    const job = matchJob(new Float32Array(64).fill(0.5));

    const reply = await request(job);

    assert.equal(reply.ok, false);
    const { error } = reply;
    assert.equal(error.code, 'INVALID_REQUEST');
    assert.equal(error.status, 400);
    assert.match(error.message, /64 dimensions/);
    // Acknowledged and deleted after its reply, with no second delivery queued.
    await waitUntil(
      async () => (await redis.xlen(keys.matchStream)) === 0,
      'the request leaves the stream',
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(replyCounts.get(job.correlationId), 1);
  });

  await t.test('SIGTERM saves the index and exits 0', async () => {
    const code = await stopMatcher(matcher);

    assert.equal(code, 0, matcher.output());
    assert.ok(existsSync(join(indexDir, 'manifest.json')));
    assert.equal(await heartbeatOf(matcher), undefined);
    assert.match(matcher.output(), /matcher stopped/);
  });

  await t.test('restart loads the index and answers the same', async () => {
    matcher = spawnMatcher();

    const heartbeat = await waitForReady(matcher);
    const result = resultOf(await request(matchJob(probe)));

    const detail = heartbeat.detail as IndexStatus;
    assert.equal(detail.rebuild.path, 'loaded');
    assert.equal(detail.index?.size, 16);
    assert.deepEqual(result.faces[0]!.candidates, firstAnswer!.faces[0]!.candidates);
    assert.equal(await stopMatcher(matcher), 0, matcher.output());
  });
});

test('mixed models are rejected', { timeout: 30_000 }, async (t) => {
  const mixedDb = await openTestDatabase();
  const mixedIndexDir = await makeTempDir();
  t.after(async () => {
    await dropTestDatabase(mixedDb);
    await rm(mixedIndexDir, { recursive: true, force: true });
  });
  const current = await enrolVisitor(mixedDb, random, 'Current model', 1);
  await enrolVisitor(mixedDb, random, 'Old model', 2, OTHER_MODEL_ID);
  const matcher = spawnMatcher({ DATABASE_SCHEMA: mixedDb.schema, INDEX_DIR: mixedIndexDir });

  const heartbeat = await waitForHeartbeat(
    matcher,
    (beat) => (beat.detail as IndexStatus).state === 'refusing',
    'the matcher heartbeat says refusing',
  );
  const reply = await request(matchJob(current.faces[0]!.vector));

  assert.equal(heartbeat.ready, false);
  const detail = heartbeat.detail as IndexStatus;
  assert.match(detail.reason ?? '', /re-extract/);
  assert.deepEqual(detail.otherModels, { [OTHER_MODEL_ID]: 2 });
  assert.equal(reply.ok, false);
  const { error } = reply;
  assert.equal(error.code, 'MODEL_MISMATCH');
  assert.equal(error.status, 409);
  assert.match(matcher.output(), /rejecting identify requests/);
  assert.equal(await stopMatcher(matcher), 0, matcher.output());
});
