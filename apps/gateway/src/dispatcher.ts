import { randomUUID } from 'node:crypto';

import {
  type InferenceJob,
  type KeyNames,
  type Queues,
  type Reply,
  addInferenceJob,
  newBlobKey,
  putBlob,
  redisUnavailable,
} from '@facegate/contracts';
import { FaceGateError, deserializeError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import type { Redis } from 'ioredis';

/**
 * The backlog is read from Redis at most this often; between reads a burst can
 * overshoot QUEUE_MAX_WAITING by the requests of one interval.
 */
const BACKLOG_READ_INTERVAL_MS = 50;
/**
 * A request waits for a new backlog read only when the last one is older than this. A
 * younger one decides, and a new read starts beside the request, so that a steady stream of
 * requests does not wait a Redis round trip every BACKLOG_READ_INTERVAL_MS.
 */
const BACKLOG_MAX_AGE_MS = 1000;

interface Pending {
  resolve(result: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export interface DispatcherOptions {
  /**
   * Stores the uploaded images. When it is the connection of `queues.inference`, the
   * images and the job go out together (see request()).
   */
  redis: Redis;
  subscriber: Redis;
  queues: Queues;
  keys: KeyNames;
  logger: Logger;
  requestTimeoutMs: number;
  queueMaxWaiting: number;
}

type JobBody<K extends InferenceJob['kind']> = Omit<
  Extract<InferenceJob, { kind: K }>,
  'kind' | 'correlationId' | 'replyTo' | 'requestId' | 'deadline' | 'blobKey' | 'blobKeys'
>;

/**
 * Sends jobs to the inference queue and waits for their answers on this
 * gateway's own reply channel, matched by correlation id, with a deadline.
 */
export class Dispatcher {
  readonly gatewayId = randomUUID();
  readonly replyChannel: string;
  readonly #options: DispatcherOptions;
  readonly #pending = new Map<string, Pending>();
  /** Whether the images and the job are written on one connection, which keeps their order. */
  readonly #oneConnection: boolean;

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.replyChannel = options.keys.replyChannel(this.gatewayId);
    this.#oneConnection = options.queues.inference.opts.connection === options.redis;
  }

  async start(): Promise<void> {
    const { subscriber, logger } = this.#options;
    subscriber.on('message', (_channel: string, message: string) => this.#onReply(message));
    // ioredis re-subscribes by itself after a reconnect.
    await subscriber.subscribe(this.replyChannel);
    logger.info({ channel: this.replyChannel }, 'listening for replies');
  }

  get inFlight(): number {
    return this.#pending.size;
  }

  #onReply(message: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(message) as Reply;
    } catch (error) {
      this.#options.logger.error({ err: error }, 'unreadable reply on the reply channel');
      return;
    }
    const pending = this.#pending.get(reply.correlationId);
    // A reply for a request that already timed out, or a duplicate after a retry.
    if (!pending) return;
    this.#pending.delete(reply.correlationId);
    clearTimeout(pending.timer);
    if (reply.ok) pending.resolve(reply.result);
    else pending.reject(deserializeError(reply.error));
  }

  /** Waiting-job count and when it was read; re-read at most every BACKLOG_READ_INTERVAL_MS. */
  #backlog = { waiting: 0, readAt: 0 };
  #backlogRead: Promise<void> | undefined;

  /** Reads the waiting-job count, unless a read is under way. */
  #readBacklog(): Promise<void> {
    this.#backlogRead ??= this.#options.queues.inference
      .getWaitingCount()
      .then((waiting) => {
        this.#backlog = { waiting, readAt: Date.now() };
      })
      .finally(() => {
        this.#backlogRead = undefined;
      });
    return this.#backlogRead;
  }

  /** Rejects with QUEUE_FULL when the waiting backlog is over the limit. */
  async #checkBacklog(): Promise<void> {
    const age = Date.now() - this.#backlog.readAt;
    if (age > BACKLOG_MAX_AGE_MS) {
      await this.#readBacklog();
    } else if (age > BACKLOG_READ_INTERVAL_MS) {
      // A failure here shows in the request itself, which needs Redis as well.
      this.#readBacklog().catch(() => undefined);
    }
    const { waiting } = this.#backlog;
    if (waiting >= this.#options.queueMaxWaiting) {
      throw new FaceGateError(
        'QUEUE_FULL',
        `${waiting} inference jobs are waiting (limit ${this.#options.queueMaxWaiting}); retry shortly`,
        { details: { retryAfterSeconds: 1 } },
      );
    }
  }

  /**
   * Stores the images, enqueues the job and resolves with the result published
   * by the worker or matcher. Rejects with TIMEOUT after requestTimeoutMs.
   */
  async request<K extends InferenceJob['kind']>(
    kind: K,
    requestId: string,
    images: Uint8Array[],
    body: JobBody<K>,
  ): Promise<unknown> {
    const { redis, queues, keys, requestTimeoutMs } = this.#options;
    const correlationId = randomUUID();

    try {
      await this.#checkBacklog();
    } catch (error) {
      throw error instanceof FaceGateError ? error : redisUnavailable(error);
    }
    const blobKeys = images.map(() => newBlobKey(keys));

    const address = {
      correlationId,
      replyTo: this.replyChannel,
      requestId,
      deadline: Date.now() + requestTimeoutMs,
    };
    const job = (kind === 'verify'
      ? { ...body, kind, ...address, blobKeys }
      : { ...body, kind, ...address, blobKey: blobKeys[0] }) as unknown as InferenceJob;

    const answer = new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(correlationId);
        reject(
          new FaceGateError(
            'TIMEOUT',
            `no result within ${requestTimeoutMs} ms; the inference workers or the matchers may be overloaded or down (GET /ready tells which)`,
          ),
        );
      }, requestTimeoutMs);
      this.#pending.set(correlationId, { resolve, reject, timer });
    });

    try {
      // Blobs live a little longer than the request deadline, then expire on their own.
      const stored = Promise.all(
        images.map((image, i) => putBlob(redis, blobKeys[i]!, image, requestTimeoutMs + 30_000)),
      );
      // Redis runs the commands of one connection in the order they arrive. On the queue's
      // connection the images are therefore stored before any worker can see the job, so
      // the job goes out without waiting for them (about 0.1 ms of a lone request).
      if (!this.#oneConnection) await stored;
      await Promise.all([stored, addInferenceJob(queues, job)]);
    } catch (error) {
      const pending = this.#pending.get(correlationId);
      if (pending) {
        clearTimeout(pending.timer);
        this.#pending.delete(correlationId);
      }
      throw redisUnavailable(error);
    }
    return answer;
  }

  /** Fails every waiting request (used at shutdown). */
  rejectAll(reason: string): void {
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new FaceGateError('NOT_READY', reason));
      this.#pending.delete(id);
    }
  }
}
