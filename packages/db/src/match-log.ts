/**
 * The optional log of recognition results. Nothing is written unless the operator sets
 * a retention period; rows older than it are pruned, and a visitor's rows go with it.
 */
import type { Actor } from './audit.js';
import type { Database } from './database.js';
import { describePostgresError, withDatabaseErrors } from './errors.js';
import { isUuid } from './ids.js';

export interface MatchLogEntry {
  /** The identified visitor, or null for a face that matched no visitor. */
  visitorId: string | null;
  faceId: number | null;
  similarity: number | null;
}

/**
 * Appends the results of one recognition. A visitor deleted meanwhile is logged as a
 * face without a match, because its id may not outlive its erasure.
 */
export async function recordMatches(
  db: Database,
  actor: Actor,
  entries: MatchLogEntry[],
): Promise<void> {
  if (entries.length === 0) return;
  const { sql } = db;
  const schema = sql(db.schema);
  const visitorIds = entries.map((entry) => (isUuid(entry.visitorId) ? entry.visitorId : null));

  const insert = () =>
    withDatabaseErrors(
      db,
      () => sql`
        insert into ${schema}.match_log (key_id, request_id, visitor_id, face_id, similarity)
        select ${actor.keyId}, ${actor.requestId ?? null}, v.id,
          case when v.id is null then null else e.face_id end, e.similarity
        from unnest(${visitorIds}::uuid[], ${entries.map((entry) => entry.faceId)}::bigint[],
                    ${entries.map((entry) => entry.similarity)}::real[])
          as e(visitor_id, face_id, similarity)
        left join ${schema}.visitors v on v.id = e.visitor_id`,
    );
  try {
    await insert();
  } catch (error) {
    // A visitor erased between the join and the foreign key check is absent from the second run's join.
    if (describePostgresError(error)?.sqlState !== '23503') throw error;
    await insert();
  }
}

/** Deletes match log rows older than `retentionDays` days and returns how many. */
export async function pruneMatchLog(db: Database, retentionDays: number): Promise<number> {
  const { sql } = db;
  const result = await withDatabaseErrors(
    db,
    () => sql`
      delete from ${sql(db.schema)}.match_log
      where at < now() - make_interval(days => ${retentionDays})`,
  );
  return result.count;
}
