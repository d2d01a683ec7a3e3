import { randomUUID } from 'node:crypto';

import {
  type InferenceJob,
  type KeyNames,
  type Queues,
  type Reply,
  addInferenceJob,
  countLive,
  newBlobKey,
  putBlob,
  redisUnavailable,
} from '@facegate/contracts';
import { FaceGateError, deserializeError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import type { Redis } from 'ioredis';

/**
 * Minimum milliseconds between reads of the backlog and of the live workers and matchers. Between
 * reads, a burst can overshoot QUEUE_MAX_WAITING by the requests of one interval.
 */
const STATE_READ_INTERVAL_MS = 50;
/**
 * A request waits for a new read only when the last one is older than this. A younger one
 * decides, and a new read starts beside the request, so that a steady stream of requests
 * does not wait a Redis round trip every STATE_READ_INTERVAL_MS.
 */
const STATE_MAX_AGE_MS = 1000;

/** Backlog and live processes, read from Redis before a job is sent. */
interface QueueState {
  /** Jobs waiting in the inference queue. */
  waiting: number;
  /** Inference workers with their models loaded, and matchers with their index. */
  workers: number;
  matchers: number;
}

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

  /** The last QueueState read and when; re-read at most every STATE_READ_INTERVAL_MS. */
  #state: QueueState & { readAt: number } = { waiting: 0, workers: 0, matchers: 0, readAt: 0 };
  #stateRead: Promise<void> | undefined;

  /** Names what the last read found missing for a job of `kind`, if anything. */
  #missing(kind: InferenceJob['kind']): string | undefined {
    if (this.#state.workers === 0) return 'inference worker with its models loaded';
    if (kind === 'recognize' && this.#state.matchers === 0) return 'matcher with a loaded index';
    return undefined;
  }

  /** Reads the queue state, unless a read is under way. */
  #readState(): Promise<void> {
    const { queues, redis, keys } = this.#options;
    this.#stateRead ??= Promise.all([
      queues.inference.getWaitingCount(),
      countLive(redis, keys, 'worker'),
      countLive(redis, keys, 'matcher'),
    ])
      .then(([waiting, workers, matchers]) => {
        this.#state = { waiting, workers, matchers, readAt: Date.now() };
      })
      .finally(() => {
        this.#stateRead = undefined;
      });
    return this.#stateRead;
  }

  /**
   * Rejects a job that could not get its result in time. NOT_READY: no process that would
   * take it is running, so it would wait in the queue until its deadline. QUEUE_FULL: the
   * waiting backlog is over the limit.
   */
  async #admit(kind: InferenceJob['kind']): Promise<void> {
    const age = Date.now() - this.#state.readAt;
    const stale = age > STATE_READ_INTERVAL_MS;
    // A request about to be refused for want of a worker or matcher waits for a fresh read,
    // so that one which has just started is seen at once.
    if (age > STATE_MAX_AGE_MS || (stale && this.#missing(kind) !== undefined)) {
      await this.#readState();
    } else if (stale) {
      // A failure here shows in the request itself, which needs Redis as well.
      this.#readState().catch(() => undefined);
    }
    const missing = this.#missing(kind);
    if (missing !== undefined) {
      throw new FaceGateError(
        'NOT_READY',
        `no ${missing} is running (none has sent a heartbeat to Redis lately), so the ` +
          'request was not queued; GET /ready tells more',
      );
    }
    const { waiting } = this.#state;
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
      await this.#admit(kind);
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
