import { FaceGateError } from '@facegate/errors';
import type postgres from 'postgres';

import { type Actor, recordAudit } from './audit.js';
import { type Database, type Sql, transaction } from './database.js';
import { describePostgresError, withDatabaseErrors } from './errors.js';
import type { Unlisten } from './feed.js';
import { bigintToNumber, decodeTimeCursor, encodeTimeCursor, isUuid } from './ids.js';

/** Free-form JSON object stored with a visitor. */
export type VisitorMetadata = Record<string, unknown>;

export interface Visitor {
  id: string;
  externalId: string | null;
  name: string;
  metadata: VisitorMetadata;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewVisitor {
  /** Caller's own id for the visitor; unique when given. */
  externalId?: string | null;
  name: string;
  metadata?: VisitorMetadata;
}

/** Fields to change; a field left undefined keeps its value, and metadata is replaced whole. */
export interface VisitorPatch {
  externalId?: string | null;
  name?: string;
  metadata?: VisitorMetadata;
}

export interface ListVisitorsOptions {
  /** Page size, 1 to MAX_VISITOR_PAGE_SIZE. */
  limit: number;
  /** `nextCursor` from the previous page; cannot be combined with `offset`. */
  cursor?: string;
  /** Rows to skip; default 0. */
  offset?: number;
}

export interface VisitorPage {
  items: Visitor[];
  /** Number of visitors in the table, not only on this page. */
  total: number;
  /** Present when more visitors follow this page. */
  nextCursor?: string;
}

export const MAX_VISITOR_PAGE_SIZE = 1000;

interface VisitorRow {
  id: string;
  external_id: string | null;
  name: string;
  metadata: VisitorMetadata;
  created_at: Date;
  updated_at: Date;
  /** created_at in microseconds since the epoch, exact, for cursors. */
  created_at_us: string;
}

function toVisitor(row: VisitorRow): Visitor {
  return {
    id: row.id,
    externalId: row.external_id,
    name: row.name,
    metadata: row.metadata,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function visitorColumns(sql: Sql): postgres.PendingQuery<postgres.Row[]> {
  // timestamptz has microsecond precision but Date only milliseconds, so cursors carry
  // the exact value as an integer count of microseconds. The count is exact on PostgreSQL
  // 14 and later, where extract() returns numeric instead of double precision.
  return sql`
    id, external_id, name, metadata, created_at, updated_at,
    (extract(epoch from created_at) * 1000000)::bigint::text as created_at_us`;
}

/** Creates a visitor. Throws FaceGateError 'CONFLICT' when `externalId` is taken. */
export async function createVisitor(db: Database, input: NewVisitor): Promise<Visitor> {
  validateName(input.name);
  validateExternalId(input.externalId);
  validateMetadata(input.metadata);
  const { sql } = db;

  const rows = await runVisitorWrite(
    db,
    input.externalId,
    () =>
      sql<VisitorRow[]>`
      insert into ${sql(db.schema)}.visitors (external_id, name, metadata)
      values (
        ${input.externalId ?? null},
        ${input.name},
        ${sql.json((input.metadata ?? {}) as postgres.JSONValue)}
      )
      returning ${visitorColumns(sql)}`,
  );
  return toVisitor(rows[0]!);
}

/** Returns the visitor, or null when there is none with that id (including a malformed id). */
export async function getVisitor(db: Database, id: string): Promise<Visitor | null> {
  if (!isUuid(id)) return null;
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<VisitorRow[]>`
      select ${visitorColumns(sql)} from ${sql(db.schema)}.visitors where id = ${id}`,
  );
  return rows[0] ? toVisitor(rows[0]) : null;
}

/**
 * Fetches several visitors in one query, keyed by id in lowercase (as PostgreSQL prints
 * uuids). Ids that are malformed or match no visitor are absent from the map.
 */
export async function getVisitorsByIds(
  db: Database,
  ids: readonly string[],
): Promise<Map<string, Visitor>> {
  const validIds = [...new Set(ids.filter(isUuid).map((id) => id.toLowerCase()))];
  const visitors = new Map<string, Visitor>();
  if (validIds.length === 0) return visitors;
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<VisitorRow[]>`
      select ${visitorColumns(sql)} from ${sql(db.schema)}.visitors
      where id = any(${validIds}::uuid[])`,
  );
  for (const row of rows) visitors.set(row.id, toVisitor(row));
  return visitors;
}

/** Suffix of the channel the visitors table notifies on, after the schema name. */
const VISITOR_CHANNEL_SUFFIX = '_visitors';

/**
 * Calls `onChange` with the id of every visitor updated or deleted (in lower case), or
 * with null when the table was truncated. `onListen` runs each time the listening
 * connection is established, including after a reconnect, which loses the notifications
 * sent while it was down.
 */
export async function listenForVisitorChanges(
  db: Database,
  onChange: (visitorId: string | null) => void,
  onListen?: () => void,
): Promise<Unlisten> {
  const listening = await withDatabaseErrors(db, () =>
    db.sql.listen(
      `${db.schema}${VISITOR_CHANNEL_SUFFIX}`,
      (payload) => onChange(payload === '' ? null : payload.toLowerCase()),
      onListen,
    ),
  );
  return () => withDatabaseErrors(db, () => listening.unlisten());
}

/**
 * Lists visitors oldest first, ordered by (createdAt, id) so pages are stable.
 * Cursor pages stay correct while visitors are added or deleted; offset pages can skip or
 * repeat rows then. Throws FaceGateError 'INVALID_REQUEST' for a bad limit, offset or cursor.
 */
export async function listVisitors(
  db: Database,
  options: ListVisitorsOptions,
): Promise<VisitorPage> {
  const { limit, cursor, offset = 0 } = options;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_VISITOR_PAGE_SIZE) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `limit is ${limit}; expected an integer from 1 to ${MAX_VISITOR_PAGE_SIZE}`,
    );
  }
  if (!Number.isInteger(offset) || offset < 0) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `offset is ${offset}; expected a non-negative integer`,
    );
  }
  if (cursor !== undefined && options.offset !== undefined) {
    throw new FaceGateError('INVALID_REQUEST', 'pass either cursor or offset, not both');
  }
  const after = cursor === undefined ? undefined : decodeTimeCursor(cursor, 'visitor list');
  const { sql } = db;

  const position = after
    ? sql`
        where (created_at, id) >
          (timestamptz 'epoch' + ${after.createdAtMicros}::bigint * interval '1 microsecond',
           ${after.id}::uuid)
        order by created_at, id
        limit ${limit + 1}`
    : sql`order by created_at, id limit ${limit + 1} offset ${offset}`;

  const [rows, countRows] = await withDatabaseErrors(db, () =>
    Promise.all([
      sql<VisitorRow[]>`select ${visitorColumns(sql)} from ${sql(db.schema)}.visitors ${position}`,
      sql<{ total: string }[]>`select count(*) as total from ${sql(db.schema)}.visitors`,
    ]),
  );

  const pageRows = rows.slice(0, limit);
  const page: VisitorPage = {
    items: pageRows.map(toVisitor),
    total: Number(countRows[0]?.total ?? 0),
  };
  const last = pageRows[pageRows.length - 1];
  if (rows.length > limit && last) page.nextCursor = encodeTimeCursor(last.created_at_us, last.id);
  return page;
}

/**
 * Changes the given fields and sets updatedAt. Returns the updated visitor, or null when
 * there is none with that id. Throws FaceGateError 'CONFLICT' when `externalId` is taken.
 */
export async function updateVisitor(
  db: Database,
  id: string,
  patch: VisitorPatch,
): Promise<Visitor | null> {
  if (patch.name !== undefined) validateName(patch.name);
  validateExternalId(patch.externalId);
  validateMetadata(patch.metadata);
  if (!isUuid(id)) return null;
  const { sql } = db;

  const assignments: postgres.PendingQuery<postgres.Row[]>[] = [];
  if (patch.externalId !== undefined) assignments.push(sql`external_id = ${patch.externalId}`);
  if (patch.name !== undefined) assignments.push(sql`name = ${patch.name}`);
  if (patch.metadata !== undefined) {
    assignments.push(sql`metadata = ${sql.json(patch.metadata as postgres.JSONValue)}`);
  }
  if (assignments.length === 0) return getVisitor(db, id);
  const setList = assignments.reduce((list, assignment) => sql`${list}, ${assignment}`);

  const rows = await runVisitorWrite(
    db,
    patch.externalId,
    () =>
      sql<VisitorRow[]>`
      update ${sql(db.schema)}.visitors set ${setList}, updated_at = now()
      where id = ${id}
      returning ${visitorColumns(sql)}`,
  );
  return rows[0] ? toVisitor(rows[0]) : null;
}

/** The outcome of erasing a visitor. */
export interface Erasure {
  /** Ids of the faces deleted with the visitor; matchers drop them from their indexes. */
  faceIds: number[];
  /** Feed seq of the last face deletion, or 0 when the visitor had no faces. */
  seq: number;
  /** Batch items that named the visitor or stored one of its faces, now redacted. */
  redactedBatchItems: number;
}

/**
 * Erases a visitor in one transaction: its faces (embeddings and image hashes), its match
 * log rows (by cascade), and the identifying fields of batch items that named it or stored
 * its faces. The audit log gets a 'visitor.delete' entry with ids and counts only.
 * Returns null when there is no such visitor.
 */
export async function eraseVisitor(
  db: Database,
  id: string,
  actor: Actor = { keyId: null },
): Promise<Erasure | null> {
  if (!isUuid(id)) return null;

  return transaction(db, async (tx) => {
    const { sql } = tx;
    const schema = sql(tx.schema);
    const visitors = await sql<{ external_id: string | null }[]>`
      select external_id from ${schema}.visitors where id = ${id} for update`;
    if (visitors.length === 0) return null;
    const externalId = visitors[0]!.external_id;

    // An item key can be a file path or an external id, which may name the person, so it
    // is replaced by a random one. The item keeps its status, so batch counts stay true.
    const redacted = await sql`
      update ${schema}.batch_items set
        item_key = 'erased:' || gen_random_uuid()::text,
        external_id = null, name = null, locator = null, face_id = null,
        reason = 'erased with its visitor', updated_at = now()
      where face_id in (select id from ${schema}.faces where visitor_id = ${id})
        ${externalId === null ? sql`` : sql`or external_id = ${externalId}`}`;

    const faces = await sql<{ id: string }[]>`
      delete from ${schema}.faces where visitor_id = ${id} returning id`;
    // The feed trigger holds the feed lock until commit, so the highest seq is this transaction's.
    const seq =
      faces.length === 0
        ? 0
        : bigintToNumber(
            (
              await sql<{ seq: string }[]>`
                select coalesce(max(seq), 0) as seq from ${schema}.face_changes`
            )[0]!.seq,
          );
    await sql`delete from ${schema}.visitors where id = ${id}`;

    const faceIds = faces.map((face) => bigintToNumber(face.id));
    await recordAudit(tx, actor, {
      action: 'visitor.delete',
      targetType: 'visitor',
      targetId: id,
      details: { faces: faceIds.length, redactedBatchItems: redacted.count },
    });
    return { faceIds, seq, redactedBatchItems: redacted.count };
  });
}

/** Erases the visitor (see eraseVisitor) and returns whether it existed. */
export async function deleteVisitor(db: Database, id: string): Promise<boolean> {
  return (await eraseVisitor(db, id)) !== null;
}

/** Runs an insert or update of a visitor, reporting a taken externalId as 'CONFLICT'. */
async function runVisitorWrite<T>(
  db: Database,
  externalId: string | null | undefined,
  write: () => Promise<T>,
): Promise<T> {
  try {
    return await withDatabaseErrors(db, write);
  } catch (error) {
    const violation = describePostgresError(error);
    if (violation?.sqlState === '23505' && violation.constraint === 'visitors_external_id_key') {
      throw new FaceGateError(
        'CONFLICT',
        `a visitor with externalId ${JSON.stringify(externalId)} already exists`,
        { details: { externalId }, cause: error },
      );
    }
    throw error;
  }
}

function validateName(name: unknown): void {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new FaceGateError('INVALID_REQUEST', 'visitor name must be a non-empty string');
  }
}

function validateExternalId(externalId: unknown): void {
  if (externalId === undefined || externalId === null) return;
  if (typeof externalId !== 'string' || externalId === '') {
    throw new FaceGateError(
      'INVALID_REQUEST',
      'visitor externalId must be a non-empty string or null',
    );
  }
}

/**
 * Maximum nesting depth of objects and arrays in visitor metadata. Storing JSON nested 5,000
 * levels deep overflowed the call stack of the PostgreSQL client's serializer.
 */
export const MAX_METADATA_DEPTH = 32;

function validateMetadata(metadata: unknown): void {
  if (metadata === undefined) return;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw new FaceGateError('INVALID_REQUEST', 'visitor metadata must be a JSON object');
  }
  // Walked with a stack of its own, so that a deep value cannot overflow the call stack here.
  const pending: [unknown, number][] = [[metadata, 1]];
  while (pending.length > 0) {
    const [value, depth] = pending.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth > MAX_METADATA_DEPTH) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `visitor metadata is nested more than ${MAX_METADATA_DEPTH} levels deep; flatten it`,
      );
    }
    for (const child of Object.values(value)) pending.push([child, depth + 1]);
  }
}
