/**
 * The batch queue's BullMQ worker, beside the inference worker in the same process and on
 * the same vision pool. A job extracts a few items, and each item's outcome is recorded in
 * PostgreSQL before the job ends. An input error fails its item at once. A transient
 * error fails the job, so BullMQ retries it with backoff for the items still unfinished.
 * On the last attempt, the error is recorded as the item's failure.
 */
import { type BatchJob, QUEUE_NAMES, addBatchPlanJob } from '@facegate/contracts';
import {
  claimBatchItems,
  failBatch,
  listUnfinishedBatchIds,
  recordItemOutcomes,
} from '@facegate/db';
import { FaceGateError, serializeError } from '@facegate/errors';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';

import type { BatchContext } from './context.js';
import { type ItemFailure, extractItems } from './item.js';
import { finishIfComplete, planBatch } from './plan.js';

export interface BatchWorkerOptions {
  /** A Redis connection for BullMQ's blocking commands (maxRetriesPerRequest null). */
  connection: Redis;
  /** BullMQ key prefix, as used by the queues. */
  prefix: string;
  /** Jobs this process runs at once; more than the pool's threads, so I/O overlaps vision. */
  concurrency: number;
}

export interface BatchWorker {
  /** Resolves once the worker's Redis connections are ready, when it can take jobs. */
  waitUntilReady(): Promise<unknown>;
  /** Stops taking batch jobs and waits for the running ones; safe to call twice. */
  close(): Promise<void>;
}

/** True for errors that a retry cannot fix: the input itself is wrong. */
function isFinal(error: unknown): error is FaceGateError {
  return error instanceof FaceGateError && !error.retryable;
}

function isLastAttempt(job: Job): boolean {
  return job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
}

export function startBatchWorker(context: BatchContext, options: BatchWorkerOptions): BatchWorker {
  const { logger } = context;

  async function runItems(job: Job<BatchJob>, batchId: string, keys: string[]): Promise<void> {
    const items = await claimBatchItems(context.db, batchId, keys);
    if (items.length === 0) return; // finished by an earlier run, or the batch was cancelled

    const failures = await extractItems(context, items);
    const lastAttempt = isLastAttempt(job);
    const retried = lastAttempt ? [] : failures.filter((failure) => !isFinal(failure.error));
    const failed = failures.filter((failure) => !retried.includes(failure));
    for (const { item, error } of retried) {
      logger.warn(
        { err: error, batchId, itemKey: item.key, attempt: job.attemptsMade + 1 },
        'batch item failed; it will be retried',
      );
    }
    await recordFailures(job, batchId, failed);
    await finishIfComplete(context, batchId);
    if (retried.length > 0) throw retried[0]!.error;
  }

  async function recordFailures(
    job: Job<BatchJob>,
    batchId: string,
    failures: readonly ItemFailure[],
  ): Promise<void> {
    if (failures.length === 0) return;
    const entries = failures.map(({ item, error }) => {
      const { code, message } = serializeError(error);
      logger.warn(
        { batchId, itemKey: item.key, code, message, attempt: job.attemptsMade + 1 },
        'batch item failed',
      );
      return { key: item.key, outcome: { status: 'failed' as const, code, reason: message } };
    });
    await recordItemOutcomes(context.db, batchId, entries);
  }

  async function runPlan(job: Job<BatchJob>, batchId: string): Promise<void> {
    try {
      await planBatch(context, batchId);
    } catch (error) {
      const final = isFinal(error);
      if (!final && !isLastAttempt(job)) {
        logger.warn(
          { err: error, batchId, attempt: job.attemptsMade + 1 },
          'batch planning failed; it will be retried',
        );
        throw error;
      }
      const { code, message } = serializeError(error);
      await failBatch(context.db, batchId, { code, message });
      logger.error({ batchId, code, message }, 'batch failed: its source cannot be planned');
      if (final) throw new UnrecoverableError(`${code}: ${message}`);
      throw error;
    }
  }

  const worker = new Worker<BatchJob>(
    QUEUE_NAMES.batch,
    async (job) => {
      const data = job.data;
      if (data.kind === 'plan') await runPlan(job, data.batchId);
      else if (data.kind === 'items') await runItems(job, data.batchId, data.itemKeys);
      else await runItems(job, data.batchId, [data.itemKey]);
    },
    {
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency,
      // A worker that dies mid-job stops renewing its lock. After lockDuration the stalled
      // check hands the job to another worker, which claims the item again.
      lockDuration: 10_000,
      stalledInterval: 5_000,
      maxStalledCount: 2,
    },
  );
  worker.on('error', (error) => logger.error({ err: error }, 'batch queue worker error'));
  worker.on('stalled', (jobId) =>
    logger.warn(
      { jobId },
      'batch job stalled (a worker stopped renewing its lock); it goes back to the queue',
    ),
  );

  resumeUnfinishedBatches(context).catch((error: unknown) =>
    logger.error(
      { err: error },
      'resuming unfinished batches failed; they continue when planned again',
    ),
  );

  let closing: Promise<void> | undefined;
  return {
    waitUntilReady: () => worker.waitUntilReady(),
    close() {
      closing ??= worker.close();
      return closing;
    },
  };
}

/**
 * Queues the planning job of every batch still planning or running, so a batch whose jobs
 * were lost (Redis restarted without persistence) continues. Planning is idempotent, and
 * jobs still in Redis keep their ids, so this queues nothing twice.
 */
async function resumeUnfinishedBatches(context: BatchContext): Promise<void> {
  const ids = await listUnfinishedBatchIds(context.db);
  for (const batchId of ids) {
    await addBatchPlanJob(context.queues, {
      kind: 'plan',
      batchId,
      requestId: `resume-${batchId}`,
    });
  }
  if (ids.length > 0) context.logger.info({ batches: ids.length }, 'resuming unfinished batches');
}
