/**
 * Reads identify requests from the match stream as one consumer of the matchers' group,
 * processes up to `concurrency` at once, and publishes each reply in the transaction that
 * acknowledges its request. A request that failed for a reason other than its input goes
 * back on the stream once. The requests of a matcher that stopped without acknowledging them
 * are claimed by the others after `claimIdleMs`.
 */
import type { KeyNames } from '@facegate/contracts';
import { MATCH_ATTEMPTS, MATCH_GROUP, addMatchJob, parseMatchEntry } from '@facegate/contracts';
import { FaceGateError, serializeError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import type { Redis } from 'ioredis';

import { FailureLog } from './failure-log.js';
import type { MatchInput, MatchOutcome, MatchSettlement } from './match-job.js';

/**
 * Default time after which a request delivered to a silent matcher is taken over. Checked
 * every half of it, so a take-over comes within 7.5 s, inside the gateway's default
 * 10 s deadline. A live matcher keeps a request far less (at most 2 s waiting for minSeq).
 */
export const DEFAULT_CLAIM_IDLE_MS = 5000;
/** A consumer of the group with nothing pending and idle this long is removed. */
const STALE_CONSUMER_MS = 3_600_000;

type StreamEntry = [id: string, fields: string[] | null];

export interface MatchConsumerOptions {
  /** Connection for the blocking reads, and nothing else: close() disconnects it. */
  reader: Redis;
  /** Connection for replies, acknowledgements, retries and claims. */
  redis: Redis;
  keys: KeyNames;
  /** Consumer name, unique among the running matchers. */
  name: string;
  /** Requests processed at once. */
  concurrency: number;
  process(delivery: MatchInput): Promise<MatchSettlement>;
  logger: Logger;
  claimIdleMs?: number;
  /** Wait before a failed request goes back on the stream. */
  retryDelayMs?: number;
  /** Maximum wait of one read, which bounds how long close() waits for the read loop. */
  blockMs?: number;
  /** Called with the outcome of every request processed, and 'claimed' for each taken over. */
  onOutcome?(outcome: MatchOutcome | 'claimed'): void;
}

export class MatchConsumer {
  readonly #options: Required<Omit<MatchConsumerOptions, 'onOutcome'>> &
    Pick<MatchConsumerOptions, 'onOutcome'>;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #readFailures: FailureLog;
  #running = false;
  #loop: Promise<void> | undefined;
  #claimTimer: NodeJS.Timeout | undefined;
  #claiming = false;

  constructor(options: MatchConsumerOptions) {
    this.#options = {
      claimIdleMs: DEFAULT_CLAIM_IDLE_MS,
      retryDelayMs: 100,
      blockMs: 1000,
      ...options,
    };
    this.#readFailures = new FailureLog(options.logger, {
      failed: 'reading identify requests failed; retrying',
      recovered: 'reading identify requests again',
    });
  }

  /** Whether the consumer reads requests (between start() and close()). */
  get running(): boolean {
    return this.#running;
  }

  /** Creates the group when it does not exist, then starts reading and claiming. */
  async start(): Promise<void> {
    await this.#ensureGroup();
    this.#running = true;
    this.#loop = this.#readLoop();
    this.#claimTimer = setInterval(() => void this.claim(), this.#options.claimIdleMs / 2);
    this.#claimTimer.unref();
  }

  /**
   * Stops reading, waits for the requests in progress, and leaves the group unless
   * requests are still pending on this consumer.
   */
  async close(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    clearInterval(this.#claimTimer);
    // Ends a blocked read at once; entries it had received stay pending for a claim.
    this.#options.reader.disconnect();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight]);
    const { redis, keys, name, logger } = this.#options;
    try {
      // Deleting a consumer drops its pending entries, which then nobody could claim.
      const pending = await redis.xpending(keys.matchStream, MATCH_GROUP, '-', '+', 1, name);
      if (pending.length === 0) {
        await redis.xgroup('DELCONSUMER', keys.matchStream, MATCH_GROUP, name);
      }
    } catch (error) {
      logger.warn({ err: error, consumer: name }, 'leaving the consumer group failed');
    }
  }

  async #ensureGroup(): Promise<void> {
    const { redis, keys } = this.#options;
    try {
      // From the start of the stream, so requests added before any matcher ran are served.
      await redis.xgroup('CREATE', keys.matchStream, MATCH_GROUP, '0', 'MKSTREAM');
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
    }
  }

  async #readLoop(): Promise<void> {
    const { reader, keys, name, concurrency, blockMs } = this.#options;
    while (this.#running) {
      while (this.#inFlight.size >= concurrency) await Promise.race(this.#inFlight);
      let response: [string, StreamEntry[]][] | null;
      try {
        response = (await reader.xreadgroup(
          'GROUP',
          MATCH_GROUP,
          name,
          'COUNT',
          concurrency - this.#inFlight.size,
          'BLOCK',
          blockMs,
          'STREAMS',
          keys.matchStream,
          '>',
        )) as [string, StreamEntry[]][] | null;
        this.#readFailures.succeeded();
      } catch (error) {
        if (!this.#running) return;
        // A Redis that restarted without its data has lost the group as well.
        if (error instanceof Error && error.message.startsWith('NOGROUP')) {
          await this.#ensureGroup().catch((groupError: unknown) =>
            this.#readFailures.failed(groupError),
          );
        } else {
          this.#readFailures.failed(error);
        }
        await sleep(200);
        continue;
      }
      for (const [id, fields] of response?.[0]?.[1] ?? []) {
        this.#handle(parseMatchEntry(id, fields ?? []));
      }
    }
  }

  #handle(delivery: MatchInput): void {
    const task = this.#settle(delivery)
      .catch((error: unknown) =>
        this.#options.logger.error(
          { err: error, entryId: delivery.id },
          'settling an identify request failed',
        ),
      )
      .finally(() => this.#inFlight.delete(task));
    this.#inFlight.add(task);
  }

  async #settle(delivery: MatchInput): Promise<void> {
    const { redis, keys, logger, retryDelayMs } = this.#options;
    const settlement = await this.#options
      .process(delivery)
      .catch((error: unknown): MatchSettlement => {
        logger.error({ err: error, entryId: delivery.id }, 'identify request processing failed');
        return { outcome: 'failed' };
      });
    this.#options.onOutcome?.(settlement.outcome);
    if (settlement.outcome === 'retry' && delivery.job) {
      await sleep(retryDelayMs);
      try {
        await addMatchJob(redis, keys, delivery.job, delivery.attempt + 1);
      } catch (error) {
        // Left unacknowledged, the request is claimed and retried later.
        logger.error({ err: error, entryId: delivery.id }, 'queueing the retry failed');
        return;
      }
    }
    await this.#acknowledge([delivery.id], settlement.reply);
  }

  /**
   * Acknowledges and deletes the entries, and publishes `reply` in the same transaction: one
   * round trip, and a reply that is not published leaves its request pending for a claim.
   */
  async #acknowledge(ids: string[], reply?: MatchSettlement['reply']): Promise<void> {
    const { redis, keys, logger } = this.#options;
    const transaction = redis.multi();
    if (reply) transaction.publish(reply.channel, JSON.stringify(reply.message));
    try {
      await transaction
        .xack(keys.matchStream, MATCH_GROUP, ...ids)
        .xdel(keys.matchStream, ...ids)
        .exec();
    } catch (error) {
      // The entries stay pending, so a claim processes them again: a second reply at worst.
      logger.warn(
        { err: error, entryIds: ids },
        reply
          ? 'publishing a reply and acknowledging its request failed; the request is taken over later'
          : 'acknowledging identify requests failed',
      );
    }
  }

  /**
   * Takes over requests pending longer than claimIdleMs on any consumer, because their
   * matcher stopped processing them. One that has had all its attempts gets an error reply.
   * Also removes consumers that left nothing pending and have been idle for an hour.
   */
  async claim(): Promise<void> {
    if (this.#claiming || !this.#running) return;
    this.#claiming = true;
    const { redis, keys, name, claimIdleMs, concurrency, logger } = this.#options;
    try {
      const pending = (await redis.xpending(
        keys.matchStream,
        MATCH_GROUP,
        'IDLE',
        claimIdleMs,
        '-',
        '+',
        concurrency,
      )) as [id: string, consumer: string, idleMs: number, deliveries: number][];
      for (const [id, consumer, , deliveries] of pending) {
        const claimed = (await redis.xclaim(
          keys.matchStream,
          MATCH_GROUP,
          name,
          claimIdleMs,
          id,
        )) as StreamEntry[];
        // Another matcher claimed it first, or it was deleted.
        const fields = claimed[0]?.[1];
        if (!fields) {
          if (claimed.length > 0) await this.#acknowledge([id]);
          continue;
        }
        const entry = parseMatchEntry(id, fields);
        const attempt = entry.attempt + deliveries;
        this.#options.onOutcome?.('claimed');
        if (attempt > MATCH_ATTEMPTS) {
          await this.#giveUp(entry, attempt - 1);
          continue;
        }
        logger.warn(
          { entryId: id, consumer, attempt, correlationId: entry.job?.correlationId },
          'took over an identify request from a matcher that did not reply to it',
        );
        this.#handle({ ...entry, attempt });
      }
      await this.#removeStaleConsumers();
    } catch (error) {
      logger.warn({ err: error }, 'claiming pending identify requests failed');
    } finally {
      this.#claiming = false;
    }
  }

  /**
   * Publishes an INTERNAL error reply for a request that has had all its attempts, and
   * acknowledges it, so that a request that crashes matchers is not passed on for ever.
   */
  async #giveUp(entry: MatchInput, deliveries: number): Promise<void> {
    const { logger } = this.#options;
    logger.error(
      { entryId: entry.id, deliveries, correlationId: entry.job?.correlationId },
      'identify request delivered on every attempt without a reply; replying with an error',
    );
    let reply: MatchSettlement['reply'];
    if (entry.job?.replyTo && entry.job.correlationId) {
      const error = new FaceGateError(
        'INTERNAL',
        `the identify request was delivered ${deliveries} times and no matcher replied`,
      );
      reply = {
        channel: entry.job.replyTo,
        message: {
          correlationId: entry.job.correlationId,
          ok: false,
          error: serializeError(error),
        },
      };
    }
    this.#options.onOutcome?.('failed');
    await this.#acknowledge([entry.id], reply);
  }

  async #removeStaleConsumers(): Promise<void> {
    const { redis, keys, name } = this.#options;
    const consumers = (await redis.xinfo(
      'CONSUMERS',
      keys.matchStream,
      MATCH_GROUP,
    )) as unknown[][];
    for (const fields of consumers) {
      const value = (field: string): unknown => fields[fields.indexOf(field) + 1];
      const consumer = String(value('name'));
      if (consumer === name) continue;
      if (Number(value('pending')) === 0 && Number(value('idle')) > STALE_CONSUMER_MS) {
        await redis.xgroup('DELCONSUMER', keys.matchStream, MATCH_GROUP, consumer);
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
