// Inference worker process: takes jobs from the inference queue and runs them
// on a piscina pool of vision threads. Started alone (`node dist/src/main.js`,
// configured by environment) or by `npm start` beside the other processes.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';

import { inferenceConcurrency, loadConfigOrExit } from '@facegate/config';
import {
  type Heartbeat,
  type InferenceJob,
  QUEUE_NAMES,
  type Reply,
  createQueues,
  createRedis,
  keyNames,
  publishReply,
  waitForRedis,
  removeHeartbeat,
  writeHeartbeat,
} from '@facegate/contracts';
import { openServiceDatabase } from '@facegate/db';
import { serializeError } from '@facegate/errors';
import { createLogger, handleStopSignals, lazyChild } from '@facegate/logger';
import {
  JobMetrics,
  ModelInfoMetric,
  StageMetrics,
  createRegistry,
  serveMetrics,
} from '@facegate/metrics';
import { atomicGarbageCollection } from '@facegate/vision';
import { type Job, UnrecoverableError, Worker } from 'bullmq';

import { FileReader } from './batch/file-reader.js';
import { startBatchWorker } from './batch/worker.js';
import {
  DeadlineError,
  blobKeysOf,
  finishJob,
  handleInferenceJob,
  jobExpired,
} from './handlers.js';
import { VisionPool, isInputError } from './pool.js';
import { ServiceLoadSampler } from './service-load.js';

const SHUTDOWN_TIMEOUT_MS = 15_000;
const EXPIRED_WARNING_INTERVAL_MS = 60_000;

/** Return value of a processed inference job: 'expired' when it was skipped. */
type JobResult = 'expired' | undefined;

async function main(): Promise<void> {
  const config = loadConfigOrExit('inference-worker');
  const logger = createLogger('inference-worker', config.logLevel);
  const signals = handleStopSignals(logger);
  const id = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const keys = keyNames(config.queuePrefix);
  const startedAt = new Date().toISOString();

  const concurrency = inferenceConcurrency(config);
  // The inference and the batch workers each hand over at most `concurrency` tasks.
  const pool = new VisionPool(config.inferenceThreads, 2 * concurrency);
  const models = await pool.warmUp().catch(async (error: unknown) => {
    logger.fatal({ err: error }, 'models failed to load');
    await pool.close();
    process.exit(1);
  });
  logger.info(
    {
      models: models.models,
      threads: pool.threads,
      onnxThreads: config.onnxThreads,
      idleThreads: models.idleThreads,
      fastJpeg: models.fastJpeg,
      atomicGc: atomicGarbageCollection(),
    },
    'models loaded',
  );

  const registry = createRegistry('inference-worker');
  const stages = new StageMetrics(registry);
  const jobMetrics = new JobMetrics(registry);
  new ModelInfoMetric(registry).set(models.models);
  pool.onTimings = (timings) => stages.observeTimings(timings);
  const metricsServer = await serveMetrics(registry, config.metricsHost, config.metricsPort).catch(
    (error: unknown) => {
      logger.error(
        { err: error, port: config.metricsPort },
        'metrics endpoint failed to start; continuing without it',
      );
      return undefined;
    },
  );

  const db = await openServiceDatabase({
    url: config.databaseUrl,
    migrationUrl: config.databaseMigrationUrl,
    schema: config.databaseSchema,
  });
  const redis = createRedis(config.redisUrl);
  await waitForRedis(redis, (error) => logger.warn({ err: error }, 'waiting for Redis'));
  const queueConnection = createRedis(config.redisUrl);
  await waitForRedis(queueConnection);
  const queues = createQueues(queueConnection, keys);
  const context = { config, pool, redis, keys, queues, db };
  const load = new ServiceLoadSampler(redis, queues, logger);
  const idleSessions = models.idleThreads !== null;
  if (idleSessions) pool.serviceIdle = () => load.take();
  let processed = 0;
  /** Expired jobs skipped since the last warning, which goes out at most once a minute. */
  let expiredSinceWarning = 0;
  let expiredWarnedAt = 0;

  async function publish(job: Job<InferenceJob>, reply: Reply): Promise<void> {
    await publishReply(redis, job.data.replyTo, reply);
  }

  async function processJob(job: Job<InferenceJob>): Promise<JobResult> {
    const data = job.data;
    const log = lazyChild(logger, { requestId: data.requestId, jobId: job.id, kind: data.kind });
    const queueWaitMs = Math.max(0, Date.now() - job.timestamp);
    if (jobExpired(data)) {
      // The gateway has answered 504 already, for example after a backlog built up while no
      // worker ran. Nothing is done, so a late enrolment cannot store a face.
      await redis.del(...blobKeysOf(data)).catch(() => undefined);
      if (logger.isLevelEnabled('debug'))
        log().debug({ queueWaitMs }, 'inference job skipped: its deadline had passed');
      expiredSinceWarning += 1;
      if (Date.now() - expiredWarnedAt >= EXPIRED_WARNING_INTERVAL_MS) {
        logger.warn(
          { skippedJobs: expiredSinceWarning, queueWaitMs },
          'skipped inference jobs whose deadline had passed: a backlog after an outage, ' +
            "or this machine's clock is ahead of the gateway's",
        );
        expiredWarnedAt = Date.now();
        expiredSinceWarning = 0;
      }
      return 'expired';
    }
    stages.observeTimings({ queueWaitMs });
    const finalAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    // Before the handler fetches the image on the same connection (see ServiceLoadSampler).
    if (idleSessions && pool.inFlight === 0) void load.refresh();
    try {
      const outcome = await handleInferenceJob(context, data, queueWaitMs);
      await finishJob(redis, keys, data, outcome);
      processed += 1;
      if (logger.isLevelEnabled('debug')) {
        log().debug(
          {
            durationMs: Date.now() - job.timestamp - queueWaitMs,
            forwarded: 'forward' in outcome,
          },
          'inference job done',
        );
      }
      return undefined;
    } catch (error) {
      // An input error gives the same result on every attempt, and no client waits for the
      // retry of a job past its deadline.
      const notRetried = isInputError(error) || error instanceof DeadlineError;
      if (notRetried || finalAttempt) {
        await publish(job, {
          correlationId: data.correlationId,
          ok: false,
          error: serializeError(error),
        }).catch((publishError: unknown) =>
          log().error({ err: publishError }, 'failed to publish an error reply'),
        );
        await redis.del(...blobKeysOf(data)).catch(() => undefined);
      }
      if (notRetried)
        throw new UnrecoverableError(error instanceof Error ? error.message : String(error));
      log().error({ err: error, attempt: job.attemptsMade + 1 }, 'inference job failed');
      throw error;
    }
  }

  const worker = new Worker<InferenceJob>(QUEUE_NAMES.inference, processJob, {
    connection: createRedis(config.redisUrl, { blocking: true }),
    prefix: keys.bullPrefix,
    concurrency,
    // A worker that dies mid-job stops renewing its lock; after lockDuration the
    // stalled check hands the job to another worker.
    lockDuration: 5000,
    stalledInterval: 2500,
    maxStalledCount: 1,
  });
  worker.on('error', (error) => logger.error({ err: error }, 'queue worker error'));
  worker.on('completed', (_job, result: JobResult) =>
    jobMetrics.jobs.inc({ queue: QUEUE_NAMES.inference, outcome: result ?? 'completed' }),
  );
  worker.on('failed', (job, error) => {
    // BullMQ retries unless attempts are used up or the error is an UnrecoverableError.
    const retried =
      job !== undefined &&
      error.name !== 'UnrecoverableError' &&
      job.attemptsMade < (job.opts.attempts ?? 1);
    jobMetrics.jobs.inc({ queue: QUEUE_NAMES.inference, outcome: retried ? 'retried' : 'failed' });
  });
  worker.on('stalled', (jobId) => {
    jobMetrics.jobs.inc({ queue: QUEUE_NAMES.inference, outcome: 'stalled' });
    logger.warn(
      { jobId },
      'job stalled (a worker stopped renewing its lock); it goes back to the queue',
    );
  });

  const files = new FileReader();
  const batchWorker = startBatchWorker(
    { config, pool, files, db, queues, logger, modelId: models.modelId },
    {
      connection: createRedis(config.redisUrl, { blocking: true }),
      prefix: keys.bullPrefix,
      concurrency,
    },
  );

  async function beat(ready: boolean): Promise<void> {
    const heartbeat: Heartbeat = {
      id,
      role: 'worker',
      host: hostname(),
      pid: process.pid,
      startedAt,
      updatedAt: new Date().toISOString(),
      ready,
      detail: {
        modelId: models.modelId,
        models: models.models,
        threads: pool.threads,
        idleThreads: models.idleThreads,
        fastJpeg: models.fastJpeg.enabled,
        idleRuns: pool.idleRuns,
        concurrency,
        processed,
        utilization: pool.utilization,
      },
    };
    await writeHeartbeat(redis, keys, heartbeat, config.heartbeatIntervalMs);
  }
  const heartbeatTimer = setInterval(() => {
    beat(true).catch((error: unknown) => logger.warn({ err: error }, 'heartbeat failed'));
  }, config.heartbeatIntervalMs);
  // A worker closed while its connections are still being set up makes BullMQ 5.63 emit
  // 'error' on an object with no listener left, which ends the process. No job can run
  // before they are ready, so until then a signal exits at once. From then on it waits
  // for the running jobs.
  await Promise.all([worker.waitUntilReady(), batchWorker.waitUntilReady()]).catch(
    (error: unknown) => logger.warn({ err: error }, 'queue workers not ready; BullMQ retries'),
  );
  signals.started(shutdown);
  await beat(true).catch((error: unknown) => logger.warn({ err: error }, 'heartbeat failed'));
  logger.info({ id, concurrency }, 'inference worker started');

  async function shutdown(signal: string): Promise<void> {
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    clearInterval(heartbeatTimer);
    load.stop();
    const steps: [string, () => Promise<unknown>][] = [
      ['stop taking jobs and finish in-flight ones', () => worker.close()],
      ['stop taking batch jobs and finish in-flight ones', () => batchWorker.close()],
      ['remove heartbeat', () => removeHeartbeat(redis, keys, 'worker', id)],
      ['close thread pool', () => pool.close()],
      ['close file reader thread', () => files.close()],
      ['close queues', () => queues.close()],
      ['close Redis', () => redis.quit()],
      ['close PostgreSQL', () => db.close()],
      [
        'close the metrics endpoint',
        () =>
          new Promise((resolve) =>
            metricsServer ? metricsServer.close(resolve) : resolve(undefined),
          ),
      ],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (error) {
        logger.error({ err: error, step: name }, 'shutdown step failed');
      }
    }
    logger.info('stopped');
  }
}

await main();
