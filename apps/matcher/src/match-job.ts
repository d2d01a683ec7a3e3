/**
 * Processing of one identify request from the match stream: identify, publish the reply on
 * the gateway's channel, and decide whether a failure is retried.
 */
import type { MatchEntry, MatchJob, Reply } from '@facegate/contracts';
import { MATCH_ATTEMPTS, publishReply } from '@facegate/contracts';
import { isFaceGateError, serializeError } from '@facegate/errors';
import { type Logger, lazyChild } from '@facegate/logger';
import type { Redis } from 'ioredis';

import type { IdentifyDependencies } from './identify.js';
import { identify } from './identify.js';

export interface MatchJobDependencies extends IdentifyDependencies {
  /** Connection that publishes replies (not a blocking or subscriber connection). */
  redis: Redis;
  logger: Logger;
  /** Called with the timings of every request whose result is published (metrics). */
  onAnswered?: (timings: Record<string, number>) => void;
}

/**
 * The end of a request. `replied`: its result is published. `rejected`: the request is
 * invalid, and the error is published when it has a reply address. `retry`: a failure that
 * is not the input's, before the last attempt, with nothing published. `failed`: such a
 * failure on the last attempt, with the error published.
 */
export type MatchOutcome = 'replied' | 'rejected' | 'retry' | 'failed';

/** A delivery as read from the stream, whose job may be unreadable. */
export type MatchInput = MatchEntry;

/** Returns the processor of identify requests. It settles with an outcome and never rejects. */
export function createMatchProcessor(
  dependencies: MatchJobDependencies,
): (delivery: MatchInput) => Promise<MatchOutcome> {
  return async (delivery) => {
    const startedAtMs = Date.now();
    const data = delivery.job;
    const logger = lazyChild(dependencies.logger, {
      requestId: data?.requestId,
      entryId: delivery.id,
      correlationId: data?.correlationId,
    });
    if (typeof data?.replyTo !== 'string' || typeof data.correlationId !== 'string') {
      logger().error('identify request without replyTo or correlationId dropped');
      return 'rejected';
    }

    let reply: Reply;
    try {
      const result = await identify(data, dependencies, logger);
      // The inference queue wait arrives as queueWaitMs; this is the wait in the match stream.
      result.timings.matchQueueWaitMs = Math.max(0, startedAtMs - delivery.enqueuedAt);
      dependencies.onAnswered?.(result.timings);
      reply = { correlationId: data.correlationId, ok: true, result };
    } catch (error) {
      return replyWithError(data, delivery.attempt, error, dependencies.redis, logger);
    }

    try {
      await publishReply(dependencies.redis, data.replyTo, reply);
    } catch (error) {
      // The gateway is still waiting: another attempt may publish it.
      const last = delivery.attempt >= MATCH_ATTEMPTS;
      logger().error(
        { err: error, attempt: delivery.attempt },
        last
          ? 'publishing the reply failed; the gateway times out instead'
          : 'publishing the reply failed; the request is retried',
      );
      return last ? 'failed' : 'retry';
    }
    if (dependencies.logger.isLevelEnabled('debug')) {
      logger().debug(
        { faces: data.faces.length, durationMs: Date.now() - startedAtMs },
        'identify request replied to',
      );
    }
    return 'replied';
  };
}

async function replyWithError(
  job: MatchJob,
  attempt: number,
  error: unknown,
  redis: Redis,
  logger: () => Logger,
): Promise<MatchOutcome> {
  const inputError = isFaceGateError(error) && !error.retryable;
  const lastAttempt = attempt >= MATCH_ATTEMPTS;
  const serialized = serializeError(error);

  if (inputError) {
    logger().warn(
      { code: serialized.code, message: serialized.message },
      'identify request rejected',
    );
  } else {
    logger().error(
      { err: error, code: serialized.code, attempt, attempts: MATCH_ATTEMPTS },
      lastAttempt ? 'identify request failed' : 'identify request failed; it is retried',
    );
  }
  if (!inputError && !lastAttempt) return 'retry';

  try {
    await publishReply(redis, job.replyTo, {
      correlationId: job.correlationId,
      ok: false,
      error: serialized,
    });
  } catch (publishError) {
    logger().error(
      { err: publishError, code: serialized.code },
      'publishing the error reply failed; the gateway times out instead',
    );
  }
  return inputError ? 'rejected' : 'failed';
}
