import type { Logger } from '@facegate/logger';

/** Default minimum time between two log lines about the same recurring failure. */
export const DEFAULT_REPEAT_INTERVAL_MS = 30_000;

export interface FailureMessages {
  /** Logged at error level with the error, e.g. "reading the change feed failed". */
  failed: string;
  /** Logged at info level when an attempt succeeds after failures. */
  recovered: string;
}

/**
 * Logs a recurring failure (the feed unreadable, Redis down) without one line per
 * attempt: the first failure is logged at once, later ones at most every
 * `repeatIntervalMs` with a count of the failures not logged, and `succeeded`
 * logs the recovery.
 */
export class FailureLog {
  private failures = 0;
  private unreported = 0;
  private lastReportedAtMs = 0;

  constructor(
    private readonly logger: Logger,
    private readonly messages: FailureMessages,
    private readonly repeatIntervalMs = DEFAULT_REPEAT_INTERVAL_MS,
  ) {}

  failed(error: unknown, fields: Record<string, unknown> = {}): void {
    this.failures += 1;
    const nowMs = Date.now();
    if (this.failures > 1 && nowMs - this.lastReportedAtMs < this.repeatIntervalMs) {
      this.unreported += 1;
      return;
    }

    this.logger.error(
      { ...fields, err: error, failures: this.failures, unreportedFailures: this.unreported },
      this.messages.failed,
    );
    this.unreported = 0;
    this.lastReportedAtMs = nowMs;
  }

  succeeded(): void {
    if (this.failures === 0) return;
    this.logger.info({ failures: this.failures }, this.messages.recovered);
    this.failures = 0;
    this.unreported = 0;
  }
}
