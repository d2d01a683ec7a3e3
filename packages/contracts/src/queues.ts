import { createHash } from 'node:crypto';

import { type JobsOptions, Queue, type QueueOptions } from 'bullmq';
import type { Redis } from 'ioredis';

import type { KeyNames } from './keys.js';
import type { BatchJob, InferenceJob } from './messages.js';

/**
 * The registry of every queue, its job type and its job options. Nothing else
 * calls queue.add with options of its own.
 */
export const QUEUE_NAMES = {
  inference: 'inference',
  batch: 'batch',
} as const;

/**
 * Request jobs: one retry after a failure that is not the input's fault, and a
 * worker that dies mid-job makes BullMQ move the job back (stalled) for another.
 * Results go over pub/sub, so finished jobs are not kept.
 */
export const REQUEST_JOB_OPTIONS: JobsOptions = {
  attempts: 2,
  backoff: { type: 'fixed', delay: 100 },
  removeOnComplete: true,
  removeOnFail: { age: 3600, count: 1000 },
};

/**
 * Batch jobs (planning and items): the outcome lives in PostgreSQL, so jobs are removed
 * when they end, which also frees their deterministic ids for a resumed plan. Transient
 * failures (database, Redis, file I/O) retry 5 times, 1, 2, 4 and 8 seconds apart; an
 * input error ends the job at once (UnrecoverableError).
 */
export const BATCH_JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: true,
};

export interface Queues {
  inference: Queue<InferenceJob>;
  batch: Queue<BatchJob>;
  close(): Promise<void>;
}

export function createQueues(connection: Redis, keys: KeyNames): Queues {
  const options: QueueOptions = { connection, prefix: keys.bullPrefix };
  const inference = new Queue<InferenceJob>(QUEUE_NAMES.inference, options);
  const batch = new Queue<BatchJob>(QUEUE_NAMES.batch, options);
  return {
    inference,
    batch,
    async close() {
      await Promise.allSettled([inference.close(), batch.close()]);
    },
  };
}

export function addInferenceJob(queues: Queues, job: InferenceJob): Promise<unknown> {
  return queues.inference.add(job.kind, job, { ...REQUEST_JOB_OPTIONS, jobId: job.correlationId });
}

/** Job id of a batch's planning job: one at a time per batch. */
export function batchPlanJobId(batchId: string): string {
  return `plan-${batchId}`;
}

/**
 * Items per batch job. A job's items share one claim, one lookup, one visitor insert and
 * one transaction for their faces, so a larger job costs fewer round trips per image.
 * A smaller one repeats less work when a worker dies mid-job.
 */
export const BATCH_ITEMS_PER_JOB = 64;

/**
 * Job id of a group of batch items, derived from the batch id and the keys of the whole
 * group. Planning the same batch again then never queues a second job for a group whose
 * job is still in Redis. The keys are hashed because they are file paths, and BullMQ
 * rejects ids with ':'.
 */
export function batchItemsJobId(batchId: string, itemKeys: readonly string[]): string {
  const hash = createHash('sha256');
  for (const key of itemKeys) hash.update(key).update('\0');
  return `items-${batchId}-${hash.digest('hex').slice(0, 32)}`;
}

export function addBatchPlanJob(
  queues: Queues,
  job: Extract<BatchJob, { kind: 'plan' }>,
): Promise<unknown> {
  return queues.batch.add(job.kind, job, {
    ...BATCH_JOB_OPTIONS,
    jobId: batchPlanJobId(job.batchId),
  });
}

/**
 * Queues the unfinished items of a chunk of a batch's source in one Redis round trip.
 * The chunk's keys, in source order, are cut into groups of `itemsPerJob`, and each group
 * with an unfinished item becomes a job for those items. The groups depend on the source
 * alone, not on which items are finished, so planning again gives the same job ids.
 * Callers pass a bounded chunk (a few hundred).
 */
export function addBatchItemJobs(
  queues: Queues,
  batchId: string,
  chunkKeys: readonly string[],
  unfinished: ReadonlySet<string>,
  itemsPerJob = BATCH_ITEMS_PER_JOB,
): Promise<unknown> {
  const size = Math.max(1, Math.min(itemsPerJob, BATCH_ITEMS_PER_JOB));
  const jobs = [];
  for (let start = 0; start < chunkKeys.length; start += size) {
    const group = chunkKeys.slice(start, start + size);
    const itemKeys = group.filter((key) => unfinished.has(key));
    if (itemKeys.length === 0) continue;
    jobs.push({
      name: 'items',
      data: { kind: 'items' as const, batchId, itemKeys },
      opts: { ...BATCH_JOB_OPTIONS, jobId: batchItemsJobId(batchId, group) },
    });
  }
  return queues.batch.addBulk(jobs);
}
