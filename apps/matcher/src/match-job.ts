/**
 * Processing of one identify request from the match stream: identify, build the reply for the
 * gateway's channel, and decide whether a failure is retried. The consumer publishes the reply
 * in the transaction that acknowledges the request.
 */
import type { MatchEntry, MatchJob, Reply } from '@facegate/contracts';
import { MATCH_ATTEMPTS } from '@facegate/contracts';
import { isFaceGateError, serializeError } from '@facegate/errors';
import { type Logger, lazyChild } from '@facegate/logger';

import type { IdentifyDependencies } from './identify.js';
import { identify } from './identify.js';

const EXPIRED_WARNING_INTERVAL_MS = 60_000;

export interface MatchJobDependencies extends IdentifyDependencies {
  logger: Logger;
  /** Called with the timings of every request that gets a result (metrics). */
  onAnswered?: (timings: Record<string, number>) => void;
}

/**
 * The end of a request. `replied`: its result is the reply. `rejected`: the request is
 * invalid, and the error is the reply when it has a reply address. `retry`: a failure that
 * is not the input's, before the last attempt, with no reply. `failed`: such a failure on
 * the last attempt, with the error as the reply. `expired`: skipped with no reply, because the
 * gateway had stopped waiting (its deadline had passed).
 */
export type MatchOutcome = 'replied' | 'rejected' | 'retry' | 'failed' | 'expired';

/** Outcome of a request, with the reply to publish on the gateway's channel, if any. */
export interface MatchSettlement {
  outcome: MatchOutcome;
  reply?: { channel: string; message: Reply };
}

/** A delivery as read from the stream, whose job may be unreadable. */
export type MatchInput = MatchEntry;

/** Returns the processor of identify requests. It settles with an outcome and never rejects. */
export function createMatchProcessor(
  dependencies: MatchJobDependencies,
): (delivery: MatchInput) => Promise<MatchSettlement> {
  /** Expired requests skipped since the last warning, which goes out at most once a minute. */
  let expiredSinceWarning = 0;
  let expiredWarnedAt = 0;
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
      return { outcome: 'rejected' };
    }
    // The gateway has sent 504 for such a request already, for example one of a backlog that
    // built up while no matcher ran.
    if (typeof data.deadline === 'number' && startedAtMs >= data.deadline) {
      if (dependencies.logger.isLevelEnabled('debug'))
        logger().debug('identify request skipped: its deadline had passed');
      expiredSinceWarning += 1;
      if (startedAtMs - expiredWarnedAt >= EXPIRED_WARNING_INTERVAL_MS) {
        dependencies.logger.warn(
          { skippedRequests: expiredSinceWarning },
          'skipped identify requests whose deadline had passed: a backlog after an outage, ' +
            "or this machine's clock is ahead of the gateway's",
        );
        expiredWarnedAt = startedAtMs;
        expiredSinceWarning = 0;
      }
      return { outcome: 'expired' };
    }

    try {
      const result = await identify(data, dependencies, logger);
      // The inference queue wait arrives as queueWaitMs; this is the wait in the match stream.
      result.timings.matchQueueWaitMs = Math.max(0, startedAtMs - delivery.enqueuedAt);
      dependencies.onAnswered?.(result.timings);
      if (dependencies.logger.isLevelEnabled('debug')) {
        logger().debug(
          { faces: data.faces.length, durationMs: Date.now() - startedAtMs },
          'identify request answered',
        );
      }
      return {
        outcome: 'replied',
        reply: {
          channel: data.replyTo,
          message: { correlationId: data.correlationId, ok: true, result },
        },
      };
    } catch (error) {
      return errorSettlement(data, delivery.attempt, error, logger);
    }
  };
}

function errorSettlement(
  job: MatchJob,
  attempt: number,
  error: unknown,
  logger: () => Logger,
): MatchSettlement {
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
  if (!inputError && !lastAttempt) return { outcome: 'retry' };

  return {
    outcome: inputError ? 'rejected' : 'failed',
    reply: {
      channel: job.replyTo,
      message: { correlationId: job.correlationId, ok: false, error: serialized },
    },
  };
}
