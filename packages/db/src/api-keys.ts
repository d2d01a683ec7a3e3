/**
 * API keys kept in PostgreSQL. The table stores the SHA-256 of each key, never the key.
 * A key is revoked by setting revoked_at, and every change notifies the gateways.
 */
import { FaceGateError } from '@facegate/errors';

import { type Actor, recordAudit } from './audit.js';
import { type Database, transaction } from './database.js';
import { withDatabaseErrors } from './errors.js';
import type { Unlisten } from './feed.js';

export type ApiKeyScope = 'recognize' | 'enrol' | 'admin';

export interface NewApiKey {
  /** Public key id: 12 lowercase letters or digits, also part of the key text. */
  id: string;
  name: string;
  keySha256: Buffer;
  scopes: ApiKeyScope[];
  /** Key id of the admin key that created it, or 'cli'. */
  createdBy: string;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: ApiKeyScope[];
  createdBy: string;
  createdAt: Date;
  revokedAt: Date | null;
}

/** A key that is not revoked, with the digest a gateway compares presented keys with. */
export interface ActiveApiKey {
  id: string;
  keySha256: Buffer;
  scopes: ApiKeyScope[];
}

interface ApiKeyRow {
  id: string;
  name: string;
  scopes: ApiKeyScope[];
  created_by: string;
  created_at: Date;
  revoked_at: Date | null;
}

/** Suffix of the LISTEN/NOTIFY channel that the api_keys trigger appends to the schema name. */
const KEY_CHANNEL_SUFFIX = '_api_keys';

function toRecord(row: ApiKeyRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes,
    createdBy: row.created_by,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

/** Stores a new key and its audit entry in one transaction. */
export async function insertApiKey(
  db: Database,
  key: NewApiKey,
  actor: Actor,
): Promise<ApiKeyRecord> {
  return transaction(db, async (tx) => {
    const { sql } = tx;
    const rows = await sql<ApiKeyRow[]>`
      insert into ${sql(tx.schema)}.api_keys (id, name, key_sha256, scopes, created_by)
      values (${key.id}, ${key.name}, ${key.keySha256}, ${key.scopes}, ${key.createdBy})
      returning id, name, scopes, created_by, created_at, revoked_at`;
    await recordAudit(tx, actor, {
      action: 'key.create',
      targetType: 'key',
      targetId: key.id,
      details: { scopes: key.scopes },
    });
    return toRecord(rows[0]!);
  });
}

/** Lists every key, revoked ones included, oldest first; without hashes. */
export async function listApiKeys(db: Database): Promise<ApiKeyRecord[]> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<ApiKeyRow[]>`
      select id, name, scopes, created_by, created_at, revoked_at
      from ${sql(db.schema)}.api_keys
      order by created_at, id`,
  );
  return rows.map(toRecord);
}

/**
 * Reads the keys a gateway accepts, and whether the table has ever held a key. Revoking
 * the last key must not open the service, so `everConfigured` counts revoked keys too.
 */
export async function loadActiveApiKeys(
  db: Database,
): Promise<{ keys: ActiveApiKey[]; everConfigured: boolean }> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ id: string; key_sha256: Buffer; scopes: ApiKeyScope[]; revoked: boolean }[]>`
      select id, key_sha256, scopes, revoked_at is not null as revoked
      from ${sql(db.schema)}.api_keys`,
  );
  return {
    keys: rows
      .filter((row) => !row.revoked)
      .map((row) => ({ id: row.id, keySha256: row.key_sha256, scopes: row.scopes })),
    everConfigured: rows.length > 0,
  };
}

export interface RevokeOptions {
  /**
   * Rejects (409 CONFLICT) revoking the last active admin key of the table when no other
   * admin key exists, so that the admin routes stay usable. The gateway sets it
   * and passes its admin keys from API_KEYS, while the CLI may revoke any key.
   */
  keepAnAdmin?: { adminKeysElsewhere: number };
}

/**
 * Revokes a key and records it in the audit log. Returns the key, or null when there is
 * no key with that id. Revoking a revoked key changes nothing and writes no audit entry.
 */
export async function revokeApiKey(
  db: Database,
  id: string,
  actor: Actor,
  options: RevokeOptions = {},
): Promise<ApiKeyRecord | null> {
  return transaction(db, async (tx) => {
    const { sql } = tx;
    const existing = await sql<ApiKeyRow[]>`
      select id, name, scopes, created_by, created_at, revoked_at
      from ${sql(tx.schema)}.api_keys where id = ${id} for update`;
    const key = existing[0];
    if (!key) return null;
    if (key.revoked_at !== null) return toRecord(key);
    const guard = options.keepAnAdmin;
    if (guard && guard.adminKeysElsewhere === 0 && key.scopes.includes('admin')) {
      // Locked, so that two admins revoking each other's keys at once cannot both succeed.
      const admins = await sql<{ id: string }[]>`
        select id from ${sql(tx.schema)}.api_keys
        where revoked_at is null and 'admin' = any(scopes) for update`;
      if (admins.every((admin) => admin.id === id)) {
        throw new FaceGateError(
          'CONFLICT',
          `API key ${id} is the last active admin key; create another admin key before revoking it ` +
            "(or revoke it with 'fr keys revoke')",
        );
      }
    }

    const rows = await sql<ApiKeyRow[]>`
      update ${sql(tx.schema)}.api_keys set revoked_at = now() where id = ${id}
      returning id, name, scopes, created_by, created_at, revoked_at`;
    await recordAudit(tx, actor, { action: 'key.revoke', targetType: 'key', targetId: id });
    return toRecord(rows[0]!);
  });
}

/**
 * Calls `onChange` after each committed change to the keys table, and `onListen` each
 * time the LISTEN is in place (changes made while disconnected send no notification).
 */
export async function listenForKeyChanges(
  db: Database,
  onChange: () => void,
  onListen?: () => void,
): Promise<Unlisten> {
  const listening = await withDatabaseErrors(db, () =>
    db.sql.listen(`${db.schema}${KEY_CHANNEL_SUFFIX}`, () => onChange(), onListen),
  );
  return () => withDatabaseErrors(db, () => listening.unlisten());
}
