/**
 * The keys a gateway accepts: those of API_KEYS and those of the keys table. The table
 * is read at start, again on each change notification from PostgreSQL and at a fixed
 * interval in case a notification was lost, so a revoked key stops working on every
 * gateway within a database round trip.
 */
import { EventEmitter } from 'node:events';
import { timingSafeEqual } from 'node:crypto';

import { type Database, type Unlisten, listenForKeyChanges, loadActiveApiKeys } from '@facegate/db';
import type { Logger } from '@facegate/logger';

import { type EnvApiKey, SCOPES, type Scope, hashApiKey } from './keys.js';

/** The caller a request was authenticated as. */
export interface Principal {
  /** Key id, or null when the service runs without keys. */
  keyId: string | null;
  scopes: ReadonlySet<Scope>;
}

export type AuthMode =
  /** No key is configured, so every request is let in with every scope. */
  | 'open'
  /** Requests need a key. */
  | 'keys';

export interface KeyRingOptions {
  envKeys: EnvApiKey[];
  /** The keys table; without it only API_KEYS counts. */
  db?: Database;
  logger: Logger;
  /** Rejects every request while no key exists, instead of running open. Default false. */
  required?: boolean;
  /** Milliseconds between reads of the keys table that cover lost notifications. Default 10000. */
  reloadIntervalMs?: number;
}

interface KnownKey {
  id: string;
  sha256: Buffer;
  scopes: ReadonlySet<Scope>;
}

const ALL_SCOPES: ReadonlySet<Scope> = new Set(SCOPES);
const OPEN_PRINCIPAL: Principal = { keyId: null, scopes: ALL_SCOPES };

/** Emits 'revoked' with the ids of keys that stopped being accepted since the last reload. */
export class KeyRing extends EventEmitter<{
  revoked: [ReadonlySet<string>];
  /** The first key was created: requests without a key are no longer let in. */
  closed: [];
}> {
  readonly #options: KeyRingOptions;
  readonly #logger: Logger;
  #keys: KnownKey[] = [];
  #tableEverUsed = false;
  #unlisten: Unlisten | null = null;
  #timer: NodeJS.Timeout | null = null;
  #reloading: Promise<void> | null = null;
  #reloadAgain = false;
  #reloadFailing = false;

  constructor(options: KeyRingOptions) {
    super();
    this.#options = options;
    this.#logger = options.logger.child({ component: 'auth' });
    this.#keys = options.envKeys.map(toKnownKey);
  }

  get mode(): AuthMode {
    if (this.#options.required) return 'keys';
    return this.#options.envKeys.length > 0 || this.#tableEverUsed ? 'keys' : 'open';
  }

  /** Ids of the accepted keys. */
  get keyIds(): string[] {
    return this.#keys.map((key) => key.id);
  }

  /** Number of keys from API_KEYS with the admin scope. */
  get envAdminKeys(): number {
    return this.#options.envKeys.filter((key) => key.scopes.includes('admin')).length;
  }

  /** Reads the keys table and starts following its changes. Throws when the first read fails. */
  async start(): Promise<void> {
    const { db } = this.#options;
    if (db) {
      await this.#load(db);
      this.#unlisten = await listenForKeyChanges(
        db,
        () => void this.reload(),
        () => void this.reload(),
      );
      this.#timer = setInterval(() => void this.reload(), this.#options.reloadIntervalMs ?? 10_000);
      this.#timer.unref();
    }
    if (this.mode === 'open') {
      this.#logger.warn(
        'NO API KEYS ARE CONFIGURED: every client can enrol, read and recognize visitors. ' +
          "Set API_KEYS or create a key with 'fr keys create' before exposing this gateway.",
      );
    } else if (this.#keys.length === 0) {
      this.#logger.warn(
        "no API key is active, so every request is rejected; create one with 'fr keys create'",
      );
    } else {
      this.#logger.info({ keys: this.#keys.length }, 'API keys loaded');
    }
  }

  /**
   * Returns the principal of a presented key, or null when the key is missing or unknown.
   * Every known digest is compared in constant time, whatever matches, so the time taken
   * reveals nothing about which key came close.
   */
  authenticate(presented: string | undefined): Principal | null {
    if (this.mode === 'open') return OPEN_PRINCIPAL;
    if (presented === undefined || presented === '') return null;

    const digest = hashApiKey(presented);
    let match: KnownKey | null = null;
    for (const key of this.#keys) {
      if (timingSafeEqual(digest, key.sha256) && match === null) match = key;
    }
    return match && { keyId: match.id, scopes: match.scopes };
  }

  /** Returns whether `keyId` is still accepted; in open mode only the null key id is. */
  accepts(keyId: string | null): boolean {
    if (keyId === null) return this.mode === 'open';
    return this.#keys.some((key) => key.id === keyId);
  }

  /** Reads the keys table again; concurrent calls share one read. Failures are logged. */
  reload(): Promise<void> {
    const { db } = this.#options;
    if (!db) return Promise.resolve();
    if (this.#reloading) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      do {
        this.#reloadAgain = false;
        try {
          await this.#load(db);
          if (this.#reloadFailing) this.#logger.info('API keys are read from the database again');
          this.#reloadFailing = false;
        } catch (error) {
          if (!this.#reloadFailing) {
            this.#logger.warn(
              { err: error },
              'reading API keys failed; the keys read last stay in force',
            );
          }
          this.#reloadFailing = true;
        }
      } while (this.#reloadAgain);
    })().finally(() => {
      this.#reloading = null;
    });
    return this.#reloading;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#unlisten?.().catch(() => undefined);
    this.#unlisten = null;
  }

  async #load(db: Database): Promise<void> {
    const { keys, everConfigured } = await loadActiveApiKeys(db);
    const wasOpen = this.mode === 'open';
    const before = new Set(this.#keys.map((key) => key.id));
    this.#keys = [...this.#options.envKeys.map(toKnownKey), ...keys.map(toKnownKey)];
    this.#tableEverUsed = everConfigured;

    const now = new Set(this.#keys.map((key) => key.id));
    const revoked = new Set([...before].filter((id) => !now.has(id)));
    if (revoked.size > 0) {
      this.#logger.info({ keyIds: [...revoked] }, 'API keys revoked');
      this.emit('revoked', revoked);
    }
    if (wasOpen && (this.mode as AuthMode) === 'keys') {
      this.#logger.info('an API key now exists: requests without a key are rejected');
      this.emit('closed');
    }
  }
}

function toKnownKey(key: {
  id: string;
  sha256?: Buffer;
  keySha256?: Buffer;
  scopes: Scope[];
}): KnownKey {
  return { id: key.id, sha256: (key.sha256 ?? key.keySha256)!, scopes: new Set(key.scopes) };
}
