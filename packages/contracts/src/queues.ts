import { type JobsOptions, Queue, type QueueOptions } from 'bullmq';
import type { Redis } from 'ioredis';

import type { KeyNames } from './keys.js';
import type { InferenceJob, MatchJob } from './messages.js';

/**
 * The registry of every queue, its job type and its job options. Nothing else
 * calls queue.add with options of its own.
 */
export const QUEUE_NAMES = {
  inference: 'inference',
  match: 'match',
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

export interface Queues {
  inference: Queue<InferenceJob>;
  match: Queue<MatchJob>;
  close(): Promise<void>;
}

export function createQueues(connection: Redis, keys: KeyNames): Queues {
  const options: QueueOptions = { connection, prefix: keys.bullPrefix };
  const inference = new Queue<InferenceJob>(QUEUE_NAMES.inference, options);
  const match = new Queue<MatchJob>(QUEUE_NAMES.match, options);
  return {
    inference,
    match,
    async close() {
      await Promise.allSettled([inference.close(), match.close()]);
    },
  };
}

export function addInferenceJob(queues: Queues, job: InferenceJob): Promise<unknown> {
  return queues.inference.add(job.kind, job, { ...REQUEST_JOB_OPTIONS, jobId: job.correlationId });
}

export function addMatchJob(queues: Queues, job: MatchJob): Promise<unknown> {
  return queues.match.add(job.kind, job, {
    ...REQUEST_JOB_OPTIONS,
    jobId: `match-${job.correlationId}`,
  });
}
