/**
 * The matcher's heartbeat in Redis, which the gateway reads for GET /ready and
 * GET /api/v1/index. It expires after three missed intervals.
 */
import { hostname } from 'node:os';

import type { Heartbeat, KeyNames } from '@facegate/contracts';
import { removeHeartbeat, writeHeartbeat } from '@facegate/contracts';
import type { Logger } from '@facegate/logger';
import type { Redis } from 'ioredis';

import { FailureLog } from './failure-log.js';

export interface HeartbeatReading {
  ready: boolean;
  detail: Record<string, unknown>;
}

export interface HeartbeatOptions {
  redis: Redis;
  keys: KeyNames;
  /** Milliseconds between writes. */
  intervalMs: number;
  logger: Logger;
  /** Returns the readiness and detail to write, called at each write. */
  read: () => HeartbeatReading;
  /** Heartbeat id; default `<hostname>-<pid>`. */
  id?: string;
}

export class HeartbeatPublisher {
  readonly id: string;
  private readonly startedAt = new Date().toISOString();
  private readonly failures: FailureLog;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  private writeAgain = false;
  private stopped = false;

  constructor(private readonly options: HeartbeatOptions) {
    this.id = options.id ?? `${hostname()}-${process.pid}`;
    this.failures = new FailureLog(options.logger, {
      failed:
        'writing the matcher heartbeat to Redis failed; the gateway may report the matcher as gone',
      recovered: 'the matcher heartbeat is written to Redis again',
    });
  }

  /** Writes a heartbeat now and then every interval. */
  start(): void {
    if (this.timer !== null || this.stopped) return;
    this.timer = setInterval(() => this.publish(), this.options.intervalMs);
    this.publish();
  }

  /** Writes a heartbeat as soon as possible; calls during a write are merged into one more write. */
  publish(): void {
    if (this.stopped) return;
    if (this.writing !== null) {
      this.writeAgain = true;
      return;
    }
    // Started on the next tick, so that `writing` is set before the loop can clear it.
    this.writing = Promise.resolve().then(() => this.writeLoop());
  }

  private async writeLoop(): Promise<void> {
    // `writing` is cleared in the same step as the last check of `writeAgain`, so that no
    // publish() call is merged into a loop that has already ended.
    try {
      do {
        this.writeAgain = false;
        const { ready, detail } = this.options.read();
        const heartbeat: Heartbeat = {
          id: this.id,
          role: 'matcher',
          host: hostname(),
          pid: process.pid,
          startedAt: this.startedAt,
          updatedAt: new Date().toISOString(),
          ready,
          detail,
        };
        try {
          await writeHeartbeat(
            this.options.redis,
            this.options.keys,
            heartbeat,
            this.options.intervalMs,
          );
          this.failures.succeeded();
        } catch (error) {
          this.failures.failed(error, { heartbeatId: this.id });
        }
      } while (this.writeAgain && !this.stopped);
    } finally {
      this.writing = null;
    }
  }

  /** Stops writing and deletes the heartbeat, so the gateway treats the matcher as gone at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.writing;
    await removeHeartbeat(this.options.redis, this.options.keys, 'matcher', this.id);
  }
}
