/**
 * The audit log: who enrolled, deleted or changed what, and when. Entries name their
 * targets by id only, so the log itself contains no names, images or embeddings, and the
 * service's database role may insert entries but not change or delete them.
 */
import type { Database } from './database.js';
import { withDatabaseErrors } from './errors.js';
import { bigintToNumber } from './ids.js';

export type AuditAction =
  | 'visitor.create'
  | 'visitor.update'
  | 'visitor.delete'
  | 'face.enrol'
  | 'face.delete'
  | 'batch.start'
  | 'batch.cancel'
  | 'key.create'
  | 'key.revoke';

export type AuditTargetType = 'visitor' | 'face' | 'batch' | 'key';

/** The author of a change: the API key (null when the service runs without keys) and the request. */
export interface Actor {
  keyId: string | null;
  requestId?: string | undefined;
}

export interface AuditEntry {
  action: AuditAction;
  targetType: AuditTargetType;
  targetId: string;
  /** Ids and counts only; never names, metadata or image data. */
  details?: Record<string, unknown>;
}

export interface AuditRecord extends AuditEntry {
  id: number;
  at: Date;
  keyId: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export interface ListAuditOptions {
  /** Entries per page, 1 to MAX_AUDIT_PAGE_SIZE. Default 100. */
  limit?: number;
  /** Returns entries older than this id (the previous page's nextBefore). */
  before?: number;
  targetType?: AuditTargetType;
  targetId?: string;
}

export const MAX_AUDIT_PAGE_SIZE = 1000;

interface AuditRow {
  id: string;
  at: Date;
  key_id: string | null;
  action: AuditAction;
  target_type: AuditTargetType;
  target_id: string;
  request_id: string | null;
  details: Record<string, unknown>;
}

/** Appends one entry. Pass a transaction's Database to record it atomically with the change. */
export async function recordAudit(db: Database, actor: Actor, entry: AuditEntry): Promise<void> {
  const { sql } = db;
  await withDatabaseErrors(
    db,
    () => sql`
      insert into ${sql(db.schema)}.audit_log
        (key_id, action, target_type, target_id, request_id, details)
      values (
        ${actor.keyId}, ${entry.action}, ${entry.targetType}, ${entry.targetId},
        ${actor.requestId ?? null}, ${sql.json((entry.details ?? {}) as never)}
      )`,
  );
}

/** Lists entries newest first. */
export async function listAudit(
  db: Database,
  options: ListAuditOptions = {},
): Promise<{ items: AuditRecord[]; nextBefore: number | null }> {
  const limit = Math.min(Math.max(1, options.limit ?? 100), MAX_AUDIT_PAGE_SIZE);
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<AuditRow[]>`
      select id, at, key_id, action, target_type, target_id, request_id, details
      from ${sql(db.schema)}.audit_log
      where true
        ${options.before === undefined ? sql`` : sql`and id < ${options.before}`}
        ${options.targetType === undefined ? sql`` : sql`and target_type = ${options.targetType}`}
        ${options.targetId === undefined ? sql`` : sql`and target_id = ${options.targetId}`}
      order by id desc
      limit ${limit + 1}`,
  );
  const items = rows.slice(0, limit).map((row) => ({
    id: bigintToNumber(row.id),
    at: row.at,
    keyId: row.key_id,
    action: row.action,
    targetType: row.target_type,
    targetId: row.target_id,
    requestId: row.request_id,
    details: row.details,
  }));
  const last = items.at(-1);
  return { items, nextBefore: rows.length > limit && last ? last.id : null };
}
