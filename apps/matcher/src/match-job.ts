/**
 * Processing of one BullMQ match job: identify, publish the reply on the gateway's
 * channel, and decide whether a failure is retried.
 */
import type { MatchJob, Reply } from '@facegate/contracts';
import { publishReply } from '@facegate/contracts';
import { isFaceGateError, serializeError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import type { Job } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import type { Redis } from 'ioredis';

import type { IdentifyDependencies } from './identify.js';
import { identify } from './identify.js';

export interface MatchJobDependencies extends IdentifyDependencies {
  /** Connection that publishes replies (not a blocking or subscriber connection). */
  redis: Redis;
  logger: Logger;
  /** Called with the timings of every answered job (metrics). */
  onAnswered?: (timings: Record<string, number>) => void;
}

/**
 * Returns the BullMQ processor of the match queue.
 *
 * A success is published at once. An input error (a FaceGateError that is not
 * retryable) is published and the job fails with UnrecoverableError, so BullMQ does not
 * retry it. Any other error is published only on the last attempt and rethrown, so
 * BullMQ retries the job and the gateway keeps waiting meanwhile.
 */
export function createMatchProcessor(
  dependencies: MatchJobDependencies,
): (job: Job<MatchJob>) => Promise<void> {
  return async (job) => {
    const startedAtMs = Date.now();
    const data = job.data;
    const logger = dependencies.logger.child({
      requestId: data?.requestId,
      jobId: job.id,
      correlationId: data?.correlationId,
    });
    if (typeof data?.replyTo !== 'string' || typeof data.correlationId !== 'string') {
      logger.error({ jobName: job.name }, 'match job without replyTo or correlationId dropped');
      throw new UnrecoverableError(
        'match job has no replyTo or correlationId, so no reply can be sent',
      );
    }

    let reply: Reply;
    try {
      const result = await identify(data, dependencies, logger);
      // The inference queue wait arrives as queueWaitMs; this is the wait in the match queue.
      result.timings.matchQueueWaitMs = Math.max(0, startedAtMs - job.timestamp);
      dependencies.onAnswered?.(result.timings);
      reply = { correlationId: data.correlationId, ok: true, result };
    } catch (error) {
      await replyWithError(job, error, dependencies.redis, logger);
      throw isInputError(error) ? new UnrecoverableError(serializeError(error).message) : error;
    }

    // A failed publish fails the job, so BullMQ runs it again.
    await publishReply(dependencies.redis, data.replyTo, reply);
    logger.debug(
      { faces: data.faces.length, durationMs: Date.now() - startedAtMs },
      'identify job answered',
    );
  };
}

async function replyWithError(
  job: Job<MatchJob>,
  error: unknown,
  redis: Redis,
  logger: Logger,
): Promise<void> {
  const inputError = isInputError(error);
  const attempt = job.attemptsMade + 1;
  const attempts = job.opts.attempts ?? 1;
  const lastAttempt = attempt >= attempts;
  const serialized = serializeError(error);

  if (inputError) {
    logger.warn({ code: serialized.code, message: serialized.message }, 'identify job rejected');
  } else {
    logger.error(
      { err: error, code: serialized.code, attempt, attempts },
      lastAttempt ? 'identify job failed' : 'identify job failed; BullMQ retries it',
    );
  }
  if (!inputError && !lastAttempt) return;

  try {
    await publishReply(redis, job.data.replyTo, {
      correlationId: job.data.correlationId,
      ok: false,
      error: serialized,
    });
  } catch (publishError) {
    logger.error(
      { err: publishError, code: serialized.code },
      'publishing the error reply failed; the gateway times out instead',
    );
  }
}

function isInputError(error: unknown): boolean {
  return isFaceGateError(error) && !error.retryable;
}
