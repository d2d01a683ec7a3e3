/**
 * The matcher process: owns the face index, processes identify jobs of the match queue
 * and reports its state in a Redis heartbeat. Run as `node apps/matcher/dist/src/main.js`.
 * Exits 2 on invalid configuration, 1 when the start fails, 0 after SIGTERM or SIGINT.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';

import type { Config } from '@facegate/config';
import { ConfigError, loadConfig } from '@facegate/config';
import { createRedis, defaultIdentifyThreshold, keyNames } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { openServiceDatabase } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import { hnswlibBuild } from '@facegate/index';
import { createLogger } from '@facegate/logger';
import type { Redis } from 'ioredis';

import { FailureLog } from './failure-log.js';
import { HeartbeatPublisher } from './heartbeat.js';
import {
  IndexMetrics,
  JobMetrics,
  StageMetrics,
  createRegistry,
  serveMetrics,
} from '@facegate/metrics';
import { IndexService } from './index-service.js';
import { MatchConsumer } from './match-consumer.js';
import { createMatchProcessor } from './match-job.js';
import { embedderModel } from './models.js';
import { VisitorCache } from './visitor-cache.js';

/** After this, shutdown gives up on the remaining steps and exits 1. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
const REDIS_READY_TIMEOUT_MS = 10_000;

interface Resources {
  db?: Database;
  redis?: Redis;
  reader?: Redis;
  service?: IndexService;
  visitors?: VisitorCache;
  heartbeat?: HeartbeatPublisher;
  metricsServer?: Server | undefined;
  consumer?: MatchConsumer;
}

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`matcher: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

const config = readConfig();
const logger = createLogger('matcher', config.logLevel);
const model = embedderModel(config.faceEmbedder);
const keys = keyNames(config.queuePrefix);
const resources: Resources = {};
const registry = createRegistry('matcher');
const metrics = { jobs: new JobMetrics(registry), stages: new StageMetrics(registry) };
let workerRunning = false;
let stopping: Promise<void> | null = null;

async function start(): Promise<void> {
  const startedMs = performance.now();
  logger.info(
    {
      modelId: model.modelId,
      indexDir: config.indexDir,
      databaseSchema: config.databaseSchema,
      queuePrefix: config.queuePrefix,
      concurrency: config.matcherConcurrency,
    },
    'matcher starting',
  );

  const db = await openServiceDatabase({
    url: config.databaseUrl,
    migrationUrl: config.databaseMigrationUrl,
    schema: config.databaseSchema,
  });
  resources.db = db;

  const redis = createRedis(config.redisUrl);
  resources.redis = redis;
  const redisFailures = new FailureLog(logger, {
    failed: 'the Redis connection failed; replies and heartbeats fail until it reconnects',
    recovered: 'the Redis connection is ready again',
  });
  redis.on('error', (error) => redisFailures.failed(error));
  redis.on('ready', () => redisFailures.succeeded());
  await waitUntilReady(redis);

  const service = new IndexService({
    db,
    model,
    indexDir: config.indexDir,
    scoring: config.identifyScoring,
    hnsw: {
      M: config.hnswM,
      efConstruction: config.hnswEfConstruction,
      ef: config.hnswEf,
      initialCapacity: config.hnswInitialCapacity,
      exactSearchMaxFaces: config.exactSearchMaxFaces,
    },
    persistDelayMs: config.indexPersistDelayMs,
    feedPollIntervalMs: config.feedPollIntervalMs,
    logger,
    onUpdate: () => resources.heartbeat?.publish(),
  });
  resources.service = service;
  new IndexMetrics(registry, () => {
    const status = service.status();
    return status.index
      ? { ...status.index, rebuildDurationMs: status.rebuild?.lastDurationMs ?? null }
      : undefined;
  });
  resources.metricsServer = await serveMetrics(
    registry,
    config.metricsHost,
    config.metricsPort,
  ).catch((error: unknown) => {
    logger.error(
      { err: error, port: config.metricsPort },
      'metrics endpoint failed to start; continuing without it',
    );
    return undefined;
  });
  const heartbeat = new HeartbeatPublisher({
    redis,
    keys,
    intervalMs: config.heartbeatIntervalMs,
    logger,
    read: () => {
      const status = service.status();
      const identifyThreshold =
        config.identifyThreshold ?? defaultIdentifyThreshold(model.modelId, service.scoring);
      return {
        ready: status.state === 'ready' && workerRunning,
        detail: { ...status, identifyThreshold },
      };
    },
  });
  resources.heartbeat = heartbeat;
  heartbeat.start();

  await service.start();
  if (stopping !== null) return;
  const visitors = new VisitorCache(db, logger);
  resources.visitors = visitors;
  await visitors.start();
  await startConsumer(service, db, visitors, redis);
  workerRunning = true;
  heartbeat.publish();

  const status = service.status();
  logger.info(
    {
      state: status.state,
      faces: status.index?.size,
      visitors: status.index?.visitors,
      lastSeq: status.index?.lastSeq,
      hnswlibBuild,
      durationMs: Math.round(performance.now() - startedMs),
    },
    'matcher started',
  );
}

async function startConsumer(
  service: IndexService,
  db: Database,
  visitors: VisitorCache,
  redis: Redis,
): Promise<MatchConsumer> {
  // A blocked XREADGROUP occupies its connection, hence one of its own.
  const reader = createRedis(config.redisUrl, { blocking: true });
  resources.reader = reader;
  const processor = createMatchProcessor({
    index: service,
    db,
    visitors,
    logger,
    identifyThreshold: config.identifyThreshold,
    onAnswered: (timings) =>
      metrics.stages.duration.observe({ stage: 'match' }, (timings.matchMs ?? 0) / 1000),
  });
  const consumer = new MatchConsumer({
    reader,
    redis,
    keys,
    name: `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`,
    concurrency: config.matcherConcurrency,
    process: processor,
    logger,
    onOutcome: (outcome) => {
      const label = outcome === 'replied' || outcome === 'rejected' ? 'completed' : outcome;
      metrics.jobs.jobs.inc({ queue: 'match', outcome: label === 'retry' ? 'retried' : label });
    },
  });
  resources.consumer = consumer;
  await consumer.start();
  return consumer;
}

/**
 * Waits for the first connection; the client keeps retrying through connection errors.
 * Throws FaceGateError DEPENDENCY_UNAVAILABLE when Redis is not ready within the timeout.
 */
function waitUntilReady(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(
        new FaceGateError(
          'DEPENDENCY_UNAVAILABLE',
          `Redis did not become ready within ${REDIS_READY_TIMEOUT_MS} ms; check REDIS_URL and that the server is running`,
        ),
      );
    }, REDIS_READY_TIMEOUT_MS);
    redis.once('ready', onReady);
  });
}

/** Runs every shutdown step once, even when one fails, then exits with `exitCode`. */
function shutdown(reason: string, exitCode: number): Promise<void> {
  stopping ??= runShutdown(reason, exitCode);
  return stopping;
}

async function runShutdown(reason: string, exitCode: number): Promise<void> {
  const startedMs = performance.now();
  logger.info({ reason }, 'matcher stopping');
  const hardStop = setTimeout(() => {
    logger.error(
      { timeoutMs: SHUTDOWN_TIMEOUT_MS },
      'shutdown did not finish in time; exiting without the remaining steps',
    );
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS);

  // close() stops reading and waits for the requests in progress.
  await runStep('closing the match consumer', () => resources.consumer?.close());
  workerRunning = false;
  await runStep('stopping the face index', () => resources.service?.stop());
  await runStep('closing the visitor cache', () => resources.visitors?.close());
  await runStep('removing the heartbeat', () => resources.heartbeat?.stop());
  await runStep('closing Redis', () => closeRedis(resources.redis, resources.reader));
  await runStep('closing PostgreSQL', () => resources.db?.close());
  await runStep(
    'closing the metrics endpoint',
    () =>
      new Promise((resolve) =>
        resources.metricsServer ? resources.metricsServer.close(resolve) : resolve(undefined),
      ),
  );

  clearTimeout(hardStop);
  logger.info({ durationMs: Math.round(performance.now() - startedMs) }, 'matcher stopped');
  process.exit(exitCode);
}

async function runStep(name: string, step: () => Promise<unknown> | undefined): Promise<void> {
  try {
    await step();
  } catch (error) {
    logger.error({ err: error }, `${name} failed; continuing the shutdown`);
  }
}

async function closeRedis(...connections: Array<Redis | undefined>): Promise<void> {
  await Promise.all(
    connections.map(async (connection) => {
      if (connection === undefined) return;
      // QUIT needs a live connection; a reconnecting one is simply dropped.
      if (connection.status !== 'ready') {
        connection.disconnect();
        return;
      }
      await connection.quit().catch(() => connection.disconnect());
    }),
  );
}

process.on('SIGTERM', () => void shutdown('SIGTERM', 0));
process.on('SIGINT', () => void shutdown('SIGINT', 0));
process.on('unhandledRejection', (error) => {
  logger.fatal({ err: error }, 'unhandled promise rejection');
  void shutdown('unhandled promise rejection', 1);
});

try {
  await start();
} catch (error) {
  // A signal during the start makes it fail on purpose; the shutdown already runs.
  if (stopping === null) {
    logger.fatal({ err: error }, 'matcher failed to start');
    await shutdown('start failed', 1);
  }
}
