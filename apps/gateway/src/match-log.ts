/**
 * Writes recognition results to the match log when an operator turned it on with
 * MATCH_LOG_RETENTION_DAYS, and prunes entries past that age. Off by default: the
 * service then keeps no record of who was seen where.
 */
import type { RecognizeResult } from '@facegate/contracts';
import {
  type Actor,
  type Database,
  type MatchLogEntry,
  pruneMatchLog,
  recordMatches,
} from '@facegate/db';
import type { Logger } from '@facegate/logger';

/** Milliseconds between prunes; each gateway prunes, and a prune with nothing to do is cheap. */
const PRUNE_INTERVAL_MS = 60 * 60 * 1000;

/** Returns one entry per detected face: its match, or no visitor for an unmatched face. */
export function matchEntries(result: RecognizeResult): MatchLogEntry[] {
  return result.faces.map((face) => ({
    visitorId: face.match?.visitorId ?? null,
    faceId: null,
    similarity: face.match?.similarity ?? null,
  }));
}

export class MatchLogger {
  readonly #db: Database;
  readonly #logger: Logger;
  readonly #retentionDays: number;
  readonly #timer: NodeJS.Timeout;
  #failing = false;

  constructor(db: Database, logger: Logger, retentionDays: number) {
    this.#db = db;
    this.#logger = logger.child({ component: 'match-log' });
    this.#retentionDays = retentionDays;
    this.#timer = setInterval(() => void this.prune(), PRUNE_INTERVAL_MS);
    this.#timer.unref();
    void this.prune();
  }

  /** Records a recognition in the background; a failure is logged once until writes work again. */
  record(actor: Actor, result: RecognizeResult): void {
    recordMatches(this.#db, actor, matchEntries(result)).then(
      () => {
        if (this.#failing) this.#logger.info('recognition results are logged again');
        this.#failing = false;
      },
      (error: unknown) => {
        if (!this.#failing)
          this.#logger.warn({ err: error }, 'logging a recognition result failed');
        this.#failing = true;
      },
    );
  }

  async prune(): Promise<number> {
    try {
      const removed = await pruneMatchLog(this.#db, this.#retentionDays);
      if (removed > 0)
        this.#logger.info({ removed, retentionDays: this.#retentionDays }, 'match log pruned');
      return removed;
    } catch (error) {
      this.#logger.warn({ err: error }, 'pruning the match log failed; the next prune retries');
      return 0;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
