/**
 * Names of visitors for recognition results, cached in the matcher so that most
 * requests need no database round trip. PostgreSQL notifies every update and deletion
 * of a visitor, which drops that entry. Every entry is dropped whenever the listening
 * connection (re)connects, because notifications sent while it was down are lost.
 * NOTE: until that reconnect, a rename made while the connection was down is not seen.
 */
import type { Database, Unlisten, Visitor } from '@facegate/db';
import { getVisitorsByIds, listenForVisitorChanges } from '@facegate/db';
import type { Logger } from '@facegate/logger';

/** The visitor fields a recognition result names. */
export type VisitorName = Pick<Visitor, 'id' | 'externalId' | 'name'>;

/** Looks up visitors by id; ids of visitors that do not exist are absent from the result. */
export interface VisitorLookup {
  get(ids: readonly string[]): Promise<Map<string, VisitorName>>;
}

/** Entries kept at most; the oldest entry makes room for a new one (an estimated 200 bytes each). */
export const DEFAULT_VISITOR_CACHE_ENTRIES = 100_000;
const LISTEN_RETRY_MS = 10_000;

export class VisitorCache implements VisitorLookup {
  readonly #db: Database;
  readonly #logger: Logger;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, VisitorName>();
  /** Counts invalidations, so that a lookup overlapping one does not store what it read. */
  #epoch = 0;
  /** True once LISTEN is established; until then every lookup reads the database. */
  #listening = false;
  #unlisten: Unlisten | null = null;
  #retryTimer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(db: Database, logger: Logger, maxEntries = DEFAULT_VISITOR_CACHE_ENTRIES) {
    this.#db = db;
    this.#logger = logger;
    this.#maxEntries = maxEntries;
  }

  /** Number of cached visitors. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Starts listening for visitor changes. When that fails, lookups read the database
   * each time and the listen is retried every 10 s.
   */
  async start(): Promise<void> {
    try {
      this.#unlisten = await listenForVisitorChanges(
        this.#db,
        (visitorId) => this.#invalidate(visitorId),
        () => {
          this.#invalidate(null);
          this.#listening = true;
        },
      );
    } catch (error) {
      this.#logger.warn(
        { err: error, retryMs: LISTEN_RETRY_MS },
        'listening for visitor changes failed; visitor names are read from PostgreSQL for every request until it succeeds',
      );
      if (!this.#closed) {
        this.#retryTimer = setTimeout(() => void this.start(), LISTEN_RETRY_MS);
        this.#retryTimer.unref();
      }
    }
  }

  async get(ids: readonly string[]): Promise<Map<string, VisitorName>> {
    const found = new Map<string, VisitorName>();
    const missing: string[] = [];
    for (const id of new Set(ids.map((value) => value.toLowerCase()))) {
      const cached = this.#listening ? this.#entries.get(id) : undefined;
      if (cached) found.set(id, cached);
      else missing.push(id);
    }
    if (missing.length === 0) return found;

    const epoch = this.#epoch;
    const visitors = await getVisitorsByIds(this.#db, missing);
    // A change notified during the read may not be in what it returned.
    const storable = this.#listening && epoch === this.#epoch;
    for (const [id, visitor] of visitors) {
      const name: VisitorName = {
        id: visitor.id,
        externalId: visitor.externalId,
        name: visitor.name,
      };
      found.set(id, name);
      if (storable) this.#store(id, name);
    }
    return found;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listening = false;
    this.#entries.clear();
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    await this.#unlisten?.().catch(() => undefined);
    this.#unlisten = null;
  }

  #invalidate(visitorId: string | null): void {
    this.#epoch += 1;
    if (visitorId === null) this.#entries.clear();
    else this.#entries.delete(visitorId);
  }

  #store(id: string, name: VisitorName): void {
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(id, name);
  }
}
