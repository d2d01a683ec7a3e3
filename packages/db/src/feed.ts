import { FaceGateError } from '@facegate/errors';

import type { Database } from './database.js';
import { CHANGE_CHANNEL_SUFFIX } from './database.js';
import { decodeEmbedding } from './embedding.js';
import { withDatabaseErrors } from './errors.js';
import { bigintToNumber } from './ids.js';

/** One entry of the face change feed, written by a trigger on every insert and delete of a face. */
export interface FaceChange {
  /** Position in the feed; ascending in commit order, possibly with gaps. */
  seq: number;
  op: 'add' | 'delete';
  faceId: number;
  /** The face's visitor for an 'add' whose face still exists; null otherwise (the feed stores no visitor ids). */
  visitorId: string | null;
  modelId: string;
  /** The face's embedding for an 'add' whose face still exists; null otherwise. */
  embedding: Float32Array | null;
}

export interface ListenOptions {
  /**
   * Called each time the LISTEN is in place: at the start and after every reconnect.
   * Notifications sent while the connection was down are lost, so this is the moment to
   * catch up with `readChanges`.
   */
  onListen?: () => void;
}

/** Stops receiving notifications. */
export type Unlisten = () => Promise<void>;

export const MAX_CHANGES_PER_READ = 10_000;

interface ChangeRow {
  seq: string;
  op: 'add' | 'delete';
  face_id: string;
  visitor_id: string | null;
  model_id: string;
  dim: number | null;
  embedding: Buffer | null;
}

/** Name of the LISTEN/NOTIFY channel that carries new feed seqs for this schema. */
export function changeChannel(db: Database): string {
  return `${db.schema}${CHANGE_CHANNEL_SUFFIX}`;
}

/**
 * Reads up to `limit` changes with seq greater than `afterSeq`, in seq order.
 * A reader that remembers the last seq it applied never misses a change, because seq
 * order is commit order (see the feed trigger in migrations.ts).
 * Throws FaceGateError 'INVALID_REQUEST' for a negative `afterSeq` or a bad `limit`.
 */
export async function readChanges(
  db: Database,
  afterSeq: number,
  limit: number,
): Promise<FaceChange[]> {
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `afterSeq is ${afterSeq}; expected a non-negative integer`,
    );
  }
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CHANGES_PER_READ) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `limit is ${limit}; expected an integer from 1 to ${MAX_CHANGES_PER_READ}`,
    );
  }
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<ChangeRow[]>`
      select c.seq, c.op, c.face_id, f.visitor_id, c.model_id, f.dim, f.embedding
      from ${sql(db.schema)}.face_changes c
      left join ${sql(db.schema)}.faces f on c.op = 'add' and f.id = c.face_id
      where c.seq > ${afterSeq}
      order by c.seq
      limit ${limit}`,
  );
  return rows.map((row) => ({
    seq: bigintToNumber(row.seq),
    op: row.op,
    faceId: bigintToNumber(row.face_id),
    visitorId: row.visitor_id,
    modelId: row.model_id,
    embedding:
      row.embedding !== null && row.dim !== null ? decodeEmbedding(row.embedding, row.dim) : null,
  }));
}

/** Returns the highest seq in the feed, or 0 when it is empty. */
export async function maxChangeSeq(db: Database): Promise<number> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ max_seq: string }[]>`
      select coalesce(max(seq), 0) as max_seq from ${sql(db.schema)}.face_changes`,
  );
  return bigintToNumber(rows[0]?.max_seq ?? 0);
}

/**
 * Calls `onSeq` with the seq of each new feed entry, as PostgreSQL delivers the
 * notifications at commit. Uses one dedicated connection per Database, which the client
 * reconnects with backoff. Notifications are a wake-up signal, not the feed itself: read the
 * changes with `readChanges`, and poll now and then too, since notifications sent while
 * disconnected are lost.
 * Returns a function that stops this listener.
 */
export async function listenForChanges(
  db: Database,
  onSeq: (seq: number) => void,
  options: ListenOptions = {},
): Promise<Unlisten> {
  const { onListen } = options;
  const listening = await withDatabaseErrors(db, () =>
    db.sql.listen(changeChannel(db), (payload) => onSeq(Number(payload)), onListen),
  );
  return () => withDatabaseErrors(db, () => listening.unlisten());
}
