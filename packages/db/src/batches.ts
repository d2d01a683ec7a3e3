/**
 * Bulk extraction batches: the batch record, the per-item state that lets a batch resume
 * after any process crashes, and the reads of a visitor table used as a batch source.
 * Items are keyed by (batch, item key). An outcome is written only while the item is
 * unfinished, so a job that runs twice records its item once.
 */
import { FaceGateError } from '@facegate/errors';
import type postgres from 'postgres';

import { type Actor, recordAudit } from './audit.js';
import { type Database, type Sql, quoteIdentifier, transaction } from './database.js';
import { describePostgresError, toDatabaseError, withDatabaseErrors } from './errors.js';
import { encodeEmbedding } from './embedding.js';
import { type NewFace, boxToJson, validateNewFace, visitorNotFound } from './faces.js';
import { bigintToNumber, decodeTimeCursor, encodeTimeCursor, isUuid } from './ids.js';

export type BatchStatus = 'planning' | 'running' | 'completed' | 'cancelled' | 'failed';
export type BatchMode = 'enrol' | 'reextract';
/**
 * 'skip' records an image with several faces as multiple_faces; 'largest' stores its largest
 * face and 'centre' the one nearest the image centre.
 */
export type MultipleFacesPolicy = 'skip' | 'largest' | 'centre';

export type BatchItemStatus =
  | 'pending'
  | 'queued'
  | 'done'
  | 'no_face'
  | 'multiple_faces'
  | 'too_small'
  | 'failed'
  | 'skipped'
  /** An entry of the source that is not an image to enrol; outside every count but `ignored`. */
  | 'ignored';

export type TableImageEncoding = 'bytea' | 'base64' | 'path';

export interface TableSource {
  type: 'table';
  /** Table name, optionally schema-qualified and with quoted parts, e.g. `public."Visitor"`. */
  table: string;
  /** Column whose value becomes the visitor's externalId; it must identify one row. */
  idColumn: string;
  nameColumn: string;
  imageColumn: string;
  imageEncoding: TableImageEncoding;
}

/** Source of a batch's images. Paths are absolute and are read by the worker processes. */
export type BatchSource =
  | { type: 'directory'; path: string }
  | { type: 'manifest'; path: string }
  | TableSource;

export interface Batch {
  id: string;
  status: BatchStatus;
  source: BatchSource;
  mode: BatchMode;
  multipleFaces: MultipleFacesPolicy;
  /** Embedding model of the worker that planned the batch; null until planning starts. */
  modelId: string | null;
  /** Source entries left out: non-image files of a directory, table rows without an id. */
  ignoredEntries: number;
  /** Reason planning failed, for a batch with status 'failed'. */
  error: { code: string; message: string } | null;
  /** API key that started the batch; null when the service runs without keys. */
  createdBy: string | null;
  createdAt: Date;
  plannedAt: Date | null;
  finishedAt: Date | null;
}

export interface NewBatch {
  source: BatchSource;
  mode: BatchMode;
  multipleFaces: MultipleFacesPolicy;
}

export interface NewBatchOptions {
  /** Records the batch start in the audit log, in the same transaction. */
  actor?: Actor;
}

/**
 * Item counts of a batch. facesStored, noFace, multipleFaces, tooSmall, failed, skipped
 * and pending add up to total; done is total minus pending (items with any final outcome).
 */
export interface BatchCounts {
  total: number;
  done: number;
  facesStored: number;
  noFace: number;
  multipleFaces: number;
  tooSmall: number;
  failed: number;
  skipped: number;
  pending: number;
}

export interface BatchItem {
  key: string;
  externalId: string | null;
  name: string | null;
  /** Absolute file path, or the id column value of a table source. */
  locator: string | null;
  status: BatchItemStatus;
  code: string | null;
  reason: string | null;
  faceId: number | null;
  facesDetected: number | null;
  attempts: number;
  updatedAt: Date;
}

export interface NewBatchItem {
  key: string;
  externalId: string | null;
  name: string | null;
  locator: string | null;
  /**
   * 'failed' records an entry of the source that cannot become a job (a malformed manifest
   * row), and 'ignored' one that is not an image to enrol (a text file in a visitor folder).
   */
  status?: 'pending' | 'failed' | 'ignored';
  code?: string;
  reason?: string;
}

/** An unfinished item taken by a job, with what the job needs to know of its batch. */
export interface ClaimedBatchItem extends BatchItem {
  batchId: string;
  source: BatchSource;
  mode: BatchMode;
  multipleFaces: MultipleFacesPolicy;
  modelId: string | null;
  /** API key that started the batch; null when the service runs without keys. */
  createdBy: string | null;
}

export interface ItemOutcome {
  status: Exclude<BatchItemStatus, 'pending' | 'queued' | 'done'>;
  code?: string | null;
  reason?: string | null;
  facesDetected?: number | null;
  faceId?: number | null;
}

export interface StoredItemFace {
  /** False when the item was already finished, by another run of the same job. */
  recorded: boolean;
  status: 'done' | 'skipped';
  faceId: number;
  /** Faces of other models from the same image deleted in the same transaction. */
  replacedFaces: number;
}

export interface ListBatchItemsOptions {
  status?: BatchItemStatus;
  /** Page size, 1 to MAX_BATCH_ITEM_PAGE_SIZE. */
  limit: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface BatchItemPage {
  items: BatchItem[];
  nextCursor?: string;
}

export const MAX_BATCH_ITEM_PAGE_SIZE = 1000;

interface BatchRow {
  id: string;
  status: BatchStatus;
  source: BatchSource;
  mode: BatchMode;
  multiple_faces: MultipleFacesPolicy;
  model_id: string | null;
  ignored_entries: number;
  error: { code: string; message: string } | null;
  created_by: string | null;
  created_at: Date;
  planned_at: Date | null;
  finished_at: Date | null;
}

interface BatchItemRow {
  item_key: string;
  external_id: string | null;
  name: string | null;
  locator: string | null;
  status: BatchItemStatus;
  code: string | null;
  reason: string | null;
  face_id: string | null;
  faces_detected: number | null;
  attempts: number;
  updated_at: Date;
}

function toBatch(row: BatchRow): Batch {
  return {
    id: row.id,
    status: row.status,
    source: row.source,
    mode: row.mode,
    multipleFaces: row.multiple_faces,
    modelId: row.model_id,
    ignoredEntries: row.ignored_entries,
    error: row.error,
    createdBy: row.created_by,
    createdAt: row.created_at,
    plannedAt: row.planned_at,
    finishedAt: row.finished_at,
  };
}

function toBatchItem(row: BatchItemRow): BatchItem {
  return {
    key: row.item_key,
    externalId: row.external_id,
    name: row.name,
    locator: row.locator,
    status: row.status,
    code: row.code,
    reason: row.reason,
    faceId: row.face_id === null ? null : bigintToNumber(row.face_id),
    facesDetected: row.faces_detected,
    attempts: row.attempts,
    updatedAt: row.updated_at,
  };
}

function batchColumns(sql: Sql): postgres.PendingQuery<postgres.Row[]> {
  return sql`
    id, status, source, mode, multiple_faces, model_id, ignored_entries, error,
    created_by, created_at, planned_at, finished_at`;
}

function itemColumns(sql: Sql, alias?: string): postgres.PendingQuery<postgres.Row[]> {
  const i = alias ? sql`${sql(alias)}.` : sql``;
  return sql`
    ${i}item_key, ${i}external_id, ${i}name, ${i}locator, ${i}status, ${i}code, ${i}reason,
    ${i}face_id, ${i}faces_detected, ${i}attempts, ${i}updated_at`;
}

// ---------------------------------------------------------------------------------------
// Batches

/** Stores a new batch with status 'planning'. */
export async function createBatch(
  db: Database,
  input: NewBatch,
  options: NewBatchOptions = {},
): Promise<Batch> {
  const { actor } = options;
  return transaction(db, async (tx) => {
    const { sql } = tx;
    const rows = await sql<BatchRow[]>`
      insert into ${sql(tx.schema)}.batches (source, mode, multiple_faces, created_by)
      values (${sql.json(input.source as unknown as postgres.JSONValue)}, ${input.mode},
        ${input.multipleFaces}, ${actor?.keyId ?? null})
      returning ${batchColumns(sql)}`;
    const batch = toBatch(rows[0]!);
    if (actor) {
      await recordAudit(tx, actor, {
        action: 'batch.start',
        targetType: 'batch',
        targetId: batch.id,
        details: { sourceType: input.source.type, mode: input.mode },
      });
    }
    return batch;
  });
}

/** Returns the batch, or null when there is none with that id (including a malformed id). */
export async function getBatch(db: Database, id: string): Promise<Batch | null> {
  if (!isUuid(id)) return null;
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<BatchRow[]>`
      select ${batchColumns(sql)} from ${sql(db.schema)}.batches where id = ${id}`,
  );
  return rows[0] ? toBatch(rows[0]) : null;
}

/** Ids of batches still planning or running, oldest first, for resuming after a restart. */
export async function listUnfinishedBatchIds(db: Database): Promise<string[]> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ id: string }[]>`
      select id from ${sql(db.schema)}.batches
      where status in ('planning', 'running')
      order by created_at`,
  );
  return rows.map((row) => row.id);
}

/**
 * Marks the start of a (re)planning run and records the model of the worker doing it,
 * unless an earlier run recorded one. Returns the batch, or null when it is no longer
 * planning or running (finished, cancelled, failed, or deleted).
 */
export async function startBatchPlanning(
  db: Database,
  id: string,
  modelId: string,
): Promise<Batch | null> {
  if (!isUuid(id)) return null;
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<BatchRow[]>`
      update ${sql(db.schema)}.batches set model_id = coalesce(model_id, ${modelId})
      where id = ${id} and status in ('planning', 'running')
      returning ${batchColumns(sql)}`,
  );
  return rows[0] ? toBatch(rows[0]) : null;
}

/** Moves a planning batch to 'running' once every item is stored. Returns false otherwise. */
export async function markBatchPlanned(
  db: Database,
  id: string,
  ignoredEntries: number,
): Promise<boolean> {
  const { sql } = db;
  const result = await withDatabaseErrors(
    db,
    () => sql`
      update ${sql(db.schema)}.batches
      set status = 'running', planned_at = now(), ignored_entries = ${ignoredEntries}
      where id = ${id} and status = 'planning'`,
  );
  return result.count > 0;
}

/** Ends a planning or running batch with status 'failed' and the reason. */
export async function failBatch(
  db: Database,
  id: string,
  error: { code: string; message: string },
): Promise<boolean> {
  const { sql } = db;
  const result = await withDatabaseErrors(
    db,
    () => sql`
      update ${sql(db.schema)}.batches
      set status = 'failed', error = ${sql.json(error)}, finished_at = now()
      where id = ${id} and status in ('planning', 'running')`,
  );
  return result.count > 0;
}

/**
 * Marks a running batch 'completed' when none of its items is pending or queued. Returns
 * true only to the one caller that made the change, so exactly one process logs it.
 */
export async function completeBatchIfFinished(db: Database, id: string): Promise<boolean> {
  const { sql } = db;
  const schema = sql(db.schema);
  const result = await withDatabaseErrors(
    db,
    () => sql`
      update ${schema}.batches b set status = 'completed', finished_at = now()
      where b.id = ${id} and b.status = 'running'
        and not exists (
          select 1 from ${schema}.batch_items i
          where i.batch_id = b.id and i.status in ('pending', 'queued'))`,
  );
  return result.count > 0;
}

/**
 * Cancels a planning or running batch: its queued jobs then end without work. Returns the
 * batch after the change (a finished batch is returned unchanged), or null when unknown.
 */
export async function cancelBatch(
  db: Database,
  id: string,
): Promise<{ batch: Batch; cancelled: boolean } | null> {
  if (!isUuid(id)) return null;
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<BatchRow[]>`
      update ${sql(db.schema)}.batches set status = 'cancelled', finished_at = now()
      where id = ${id} and status in ('planning', 'running')
      returning ${batchColumns(sql)}`,
  );
  if (rows[0]) return { batch: toBatch(rows[0]), cancelled: true };
  const batch = await getBatch(db, id);
  return batch ? { batch, cancelled: false } : null;
}

const COUNTED_AS: Record<Exclude<BatchItemStatus, 'ignored'>, keyof BatchCounts> = {
  pending: 'pending',
  queued: 'pending',
  done: 'facesStored',
  no_face: 'noFace',
  multiple_faces: 'multipleFaces',
  too_small: 'tooSmall',
  failed: 'failed',
  skipped: 'skipped',
};

function noCounts(): BatchCounts {
  return {
    total: 0,
    done: 0,
    facesStored: 0,
    noFace: 0,
    multipleFaces: 0,
    tooSmall: 0,
    failed: 0,
    skipped: 0,
    pending: 0,
  };
}

/** Counts a batch's items by outcome (see BatchCounts). */
export async function countBatchItems(db: Database, id: string): Promise<BatchCounts> {
  return (await countItemsOfBatches(db, [id])).get(id) ?? noCounts();
}

/** Counts the items of several batches in one query; every id in `ids` gets an entry. */
async function countItemsOfBatches(
  db: Database,
  ids: readonly string[],
): Promise<Map<string, BatchCounts>> {
  const counts = new Map(ids.map((id) => [id, noCounts()]));
  const valid = ids.filter(isUuid);
  if (valid.length === 0) return counts;
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ batch_id: string; status: BatchItemStatus; item_count: string }[]>`
      select batch_id, status, count(*) as item_count from ${sql(db.schema)}.batch_items
      where batch_id = any(${valid}::uuid[])
      group by batch_id, status`,
  );
  for (const row of rows) {
    // Ignored entries are counted by the batch record, which includes those without a key.
    if (row.status === 'ignored') continue;
    const batch = counts.get(row.batch_id)!;
    const count = Number(row.item_count);
    batch[COUNTED_AS[row.status]] += count;
    batch.total += count;
  }
  for (const batch of counts.values()) batch.done = batch.total - batch.pending;
  return counts;
}

export const MAX_BATCH_PAGE_SIZE = 100;

export interface ListBatchesOptions {
  status?: BatchStatus;
  /** Page size, 1 to MAX_BATCH_PAGE_SIZE. */
  limit: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface BatchPage {
  items: (Batch & { counts: BatchCounts })[];
  nextCursor?: string;
}

/**
 * Lists batches newest first, optionally of one status, with their item counts.
 * Throws FaceGateError 'INVALID_REQUEST' for a bad limit or cursor.
 */
export async function listBatches(db: Database, options: ListBatchesOptions): Promise<BatchPage> {
  const { limit, status, cursor } = options;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_BATCH_PAGE_SIZE) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `limit is ${limit}; expected an integer from 1 to ${MAX_BATCH_PAGE_SIZE}`,
    );
  }
  const before = cursor === undefined ? undefined : decodeTimeCursor(cursor, 'batch list');

  const { sql } = db;
  const conditions = [
    ...(status === undefined ? [] : [sql`status = ${status}`]),
    ...(before === undefined
      ? []
      : [
          sql`(created_at, id) <
            (timestamptz 'epoch' + ${before.createdAtMicros}::bigint * interval '1 microsecond',
             ${before.id}::uuid)`,
        ]),
  ];
  const where =
    conditions.length === 0
      ? sql``
      : sql`where ${conditions.reduce((all, condition) => sql`${all} and ${condition}`)}`;

  const rows = await withDatabaseErrors(
    db,
    () => sql<(BatchRow & { created_at_us: string })[]>`
      select ${batchColumns(sql)},
        (extract(epoch from created_at) * 1000000)::bigint::text as created_at_us
      from ${sql(db.schema)}.batches
      ${where}
      order by created_at desc, id desc
      limit ${limit + 1}`,
  );

  const pageRows = rows.slice(0, limit);
  const counts = await countItemsOfBatches(
    db,
    pageRows.map((row) => row.id),
  );
  const page: BatchPage = {
    items: pageRows.map((row) => ({ ...toBatch(row), counts: counts.get(row.id)! })),
  };
  const last = pageRows[pageRows.length - 1];
  if (rows.length > limit && last) page.nextCursor = encodeTimeCursor(last.created_at_us, last.id);
  return page;
}

/**
 * Lists a batch's items in item-key order, optionally of one status.
 * Throws FaceGateError 'INVALID_REQUEST' for a bad limit or cursor.
 */
export async function listBatchItems(
  db: Database,
  id: string,
  options: ListBatchItemsOptions,
): Promise<BatchItemPage> {
  const { limit, status, cursor } = options;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_BATCH_ITEM_PAGE_SIZE) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `limit is ${limit}; expected an integer from 1 to ${MAX_BATCH_ITEM_PAGE_SIZE}`,
    );
  }
  const afterKey = cursor === undefined ? undefined : decodeItemCursor(cursor);
  if (!isUuid(id)) return { items: [] };
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<BatchItemRow[]>`
      select ${itemColumns(sql)} from ${sql(db.schema)}.batch_items
      where batch_id = ${id}
        ${status === undefined ? sql`` : sql`and status = ${status}`}
        ${afterKey === undefined ? sql`` : sql`and item_key > ${afterKey}`}
      order by item_key
      limit ${limit + 1}`,
  );
  const page: BatchItemPage = { items: rows.slice(0, limit).map(toBatchItem) };
  const last = page.items[page.items.length - 1];
  if (rows.length > limit && last) page.nextCursor = encodeItemCursor(last.key);
  return page;
}

function encodeItemCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

function decodeItemCursor(cursor: string): string {
  const key = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  if (key === '' || encodeItemCursor(key) !== cursor) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `invalid batch item cursor ${JSON.stringify(cursor)}; pass the nextCursor of the previous page as it came`,
    );
  }
  return key;
}

// ---------------------------------------------------------------------------------------
// Items

/**
 * Stores items of a batch; an item whose key is already stored is left as it is, so a
 * planning run that repeats changes nothing. Returns the keys among `items` that are
 * still unfinished (pending or queued), which are the ones to queue.
 */
export async function upsertBatchItems(
  db: Database,
  batchId: string,
  items: readonly NewBatchItem[],
): Promise<string[]> {
  if (items.length === 0) return [];
  const { sql } = db;
  const rows = items.map((item) => ({
    batch_id: batchId,
    item_key: item.key,
    external_id: item.externalId,
    name: item.name,
    locator: item.locator,
    status: item.status ?? 'pending',
    code: item.code ?? null,
    reason: item.reason ?? null,
  }));
  const keys = items.map((item) => item.key);

  return withDatabaseErrors(db, async () => {
    await sql`
      insert into ${sql(db.schema)}.batch_items
        ${sql(rows, 'batch_id', 'item_key', 'external_id', 'name', 'locator', 'status', 'code', 'reason')}
      on conflict (batch_id, item_key) do nothing`;
    const unfinished = await sql<{ item_key: string }[]>`
      select item_key from ${sql(db.schema)}.batch_items
      where batch_id = ${batchId} and item_key = any(${keys}::text[])
        and status in ('pending', 'queued')`;
    return unfinished.map((row) => row.item_key);
  });
}

/** Marks pending items as queued once their jobs are in Redis. */
export async function markItemsQueued(
  db: Database,
  batchId: string,
  keys: readonly string[],
): Promise<void> {
  if (keys.length === 0) return;
  const { sql } = db;
  await withDatabaseErrors(
    db,
    () => sql`
      update ${sql(db.schema)}.batch_items set status = 'queued', updated_at = now()
      where batch_id = ${batchId} and item_key = any(${[...keys]}::text[]) and status = 'pending'`,
  );
}

/**
 * Takes an unfinished item of a planning or running batch for a job and counts the
 * attempt. Returns null when the item is finished, its batch cancelled or finished, or
 * either is unknown: the job then has nothing to do.
 */
export async function claimBatchItem(
  db: Database,
  batchId: string,
  key: string,
): Promise<ClaimedBatchItem | null> {
  return (await claimBatchItems(db, batchId, [key]))[0] ?? null;
}

/**
 * Takes the unfinished items among `keys` in one statement, as claimBatchItem does for
 * one. Returns them in key order; finished and unknown keys are left out.
 */
export async function claimBatchItems(
  db: Database,
  batchId: string,
  keys: readonly string[],
): Promise<ClaimedBatchItem[]> {
  if (!isUuid(batchId) || keys.length === 0) return [];
  const { sql } = db;
  const schema = sql(db.schema);
  const rows = await withDatabaseErrors(
    db,
    () => sql<
      (BatchItemRow &
        Pick<BatchRow, 'source' | 'mode' | 'multiple_faces' | 'model_id' | 'created_by'>)[]
    >`
      update ${schema}.batch_items i set attempts = i.attempts + 1, updated_at = now()
      from ${schema}.batches b
      where i.batch_id = ${batchId} and i.item_key = any(${[...new Set(keys)]}::text[])
        and b.id = i.batch_id
        and i.status in ('pending', 'queued') and b.status in ('planning', 'running')
      returning ${itemColumns(sql, 'i')}, b.source, b.mode, b.multiple_faces, b.model_id,
        b.created_by`,
  );
  return rows
    .map((row) => ({
      ...toBatchItem(row),
      batchId,
      source: row.source,
      mode: row.mode,
      multipleFaces: row.multiple_faces,
      modelId: row.model_id,
      createdBy: row.created_by,
    }))
    .sort((a, b) => (a.key < b.key ? -1 : 1)); // keys are unique within a batch
}

/**
 * Records the final outcome of an item that stored no face. Returns false when the item
 * was already finished (another run of its job recorded it first).
 */
export async function recordItemOutcome(
  db: Database,
  batchId: string,
  key: string,
  outcome: ItemOutcome,
): Promise<boolean> {
  return (await recordItemOutcomes(db, batchId, [{ key, outcome }])).has(key);
}

/**
 * Records the outcomes of several items in one statement. Returns the keys it recorded.
 * An item already finished (by another run of its job) is left as it is, and so is every
 * item of a batch no longer planning or running (a cancelled one).
 */
export async function recordItemOutcomes(
  db: Database,
  batchId: string,
  entries: readonly { key: string; outcome: ItemOutcome }[],
): Promise<Set<string>> {
  if (entries.length === 0) return new Set();
  const { sql } = db;
  const records = entries.map(({ key, outcome }) => ({
    item_key: key,
    status: outcome.status,
    code: outcome.code ?? null,
    reason: outcome.reason ?? null,
    faces_detected: outcome.facesDetected ?? null,
    face_id: outcome.faceId ?? null,
  }));
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ item_key: string }[]>`
      update ${sql(db.schema)}.batch_items i set
        status = t.status, code = t.code, reason = t.reason,
        faces_detected = t.faces_detected, face_id = t.face_id, updated_at = now()
      from jsonb_to_recordset(${sql.json(records)}) as t(
        item_key text, status text, code text, reason text, faces_detected integer, face_id bigint)
      where i.batch_id = ${batchId} and i.item_key = t.item_key
        and i.status in ('pending', 'queued')
        and exists (
          select 1 from ${sql(db.schema)}.batches b
          where b.id = ${batchId} and b.status in ('planning', 'running')
          for share)
      returning i.item_key`,
  );
  return new Set(rows.map((row) => row.item_key));
}

/** Options of storeItemFace: how the item is recorded, and whether older models' faces go. */
export interface StoreItemFaceOptions {
  replaceOtherModels: boolean;
  facesDetected: number;
  reason?: string;
}

/** One item of storeItemFaces. */
export interface ItemFaceEntry {
  key: string;
  face: NewFace;
  options: StoreItemFaceOptions;
}

type StoreItemFaceRow = {
  status: 'done' | 'skipped' | null;
  face_id: string | null;
  replaced: number;
};

/**
 * Stores an item's face and records the item atomically, so a crash leaves either both or
 * neither. With `replaceOtherModels`, faces of the same visitor and image from other
 * models are deleted too (re-extraction). An image the visitor already has for this model
 * is recorded as 'skipped'.
 *
 * It is one statement, so one round trip: the item row is locked first, which makes a
 * second run of the same item wait and then find it finished. The batch row is locked for
 * share, so a cancel waits for the faces being stored and every later one finds the
 * batch cancelled and stores nothing: the counts a cancel reports stay final. The feed
 * trigger's lock is held only until this statement commits, not across further round
 * trips.
 */
export async function storeItemFace(
  db: Database,
  batchId: string,
  key: string,
  face: NewFace,
  options: StoreItemFaceOptions,
): Promise<StoredItemFace> {
  validateNewFace(face);
  if (!isUuid(face.visitorId)) throw visitorNotFound(face.visitorId);
  let rows: StoreItemFaceRow[];
  try {
    rows = await withDatabaseErrors(db, () =>
      storeItemFaceQuery(db.sql, db.schema, batchId, { key, face, options }),
    );
  } catch (error) {
    throw asVisitorNotFound(error, face.visitorId);
  }
  return toStoredItemFace(rows);
}

/**
 * Stores the faces of several items as storeItemFace does, in one transaction whose
 * statements are sent together, so that a job's items cost one commit and about one
 * round trip. When the transaction fails (a visitor deleted meanwhile, say), each item is
 * stored alone, so one item's error reaches only that item. The result at index i
 * belongs to entries[i]: the stored face, or the error of that item.
 */
export async function storeItemFaces(
  db: Database,
  batchId: string,
  entries: readonly ItemFaceEntry[],
): Promise<(StoredItemFace | Error)[]> {
  const checked = entries.map((entry): Error | null => {
    try {
      validateNewFace(entry.face);
      if (!isUuid(entry.face.visitorId)) throw visitorNotFound(entry.face.visitorId);
      return null;
    } catch (error) {
      return asError(error);
    }
  });
  const valid = entries.filter((_, index) => checked[index] === null);
  if (valid.length > 1) {
    try {
      const results = await transaction(db, (tx) =>
        Promise.all(valid.map((entry) => storeItemFaceQuery(tx.sql, tx.schema, batchId, entry))),
      );
      let next = 0;
      return checked.map((error) => error ?? toStoredItemFace(results[next++]!));
    } catch {
      // Stored one by one below, where each item gets its own error.
    }
  }
  return Promise.all(
    entries.map(async (entry, index) => {
      const error = checked[index];
      if (error) return error;
      try {
        return await storeItemFace(db, batchId, entry.key, entry.face, entry.options);
      } catch (failure) {
        return asError(failure);
      }
    }),
  );
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function asVisitorNotFound(error: unknown, visitorId: string): unknown {
  const violation = describePostgresError(error);
  if (violation?.sqlState === '23503' && violation.constraint === 'faces_visitor_id_fkey') {
    return visitorNotFound(visitorId, error);
  }
  return error;
}

function toStoredItemFace(rows: readonly StoreItemFaceRow[]): StoredItemFace {
  const row = rows[0];
  if (!row || row.status === null) {
    return { recorded: false, status: 'skipped', faceId: 0, replacedFaces: 0 };
  }
  return {
    recorded: true,
    status: row.status,
    faceId: bigintToNumber(row.face_id ?? 0),
    replacedFaces: row.replaced,
  };
}

function storeItemFaceQuery(
  sql: Sql,
  schemaName: string,
  batchId: string,
  { key, face, options }: ItemFaceEntry,
): postgres.PendingQuery<StoreItemFaceRow[]> {
  const schema = sql(schemaName);
  const audit = face.audit;
  const skippedReason = `the visitor already has a face of model ${face.modelId} from this image`;
  return sql<StoreItemFaceRow[]>`
    with item as (
      select 1 from ${schema}.batch_items i
      join ${schema}.batches b on b.id = i.batch_id
      where i.batch_id = ${batchId} and i.item_key = ${key} and i.status in ('pending', 'queued')
        and b.status in ('planning', 'running')
      for update of i for share of b
    ), inserted as (
      insert into ${schema}.faces
        (visitor_id, model_id, dim, embedding, detection_score, box, face_size, image_sha256)
      select ${face.visitorId}, ${face.modelId}, ${face.embedding.length},
        ${encodeEmbedding(face.embedding)}, ${face.detectionScore},
        ${face.box === null ? null : sql.json(boxToJson(face.box))}, ${face.faceSize},
        ${face.imageSha256}
      from item
      on conflict on constraint faces_visitor_image_key do nothing
      returning id
    ), existing as (
      select f.id from ${schema}.faces f, item
      where f.visitor_id = ${face.visitorId} and f.model_id = ${face.modelId}
        and f.image_sha256 = ${face.imageSha256}
    ), replaced as (
      delete from ${schema}.faces f
      using item
      where ${options.replaceOtherModels}
        and f.visitor_id = ${face.visitorId} and f.image_sha256 = ${face.imageSha256}
        and f.model_id <> ${face.modelId}
      returning f.id
    )${
      audit
        ? sql`, audited as (
      insert into ${schema}.audit_log (key_id, action, target_type, target_id, request_id, details)
      select ${audit.actor.keyId}, 'face.enrol', 'face', id::text, ${audit.actor.requestId ?? null},
        ${sql.json({ visitorId: face.visitorId, ...audit.details } as never)}
      from inserted
    )`
        : sql``
    }, recorded as (
      update ${schema}.batch_items set
        status = case when exists (select 1 from inserted) then 'done' else 'skipped' end,
        reason = case when exists (select 1 from inserted) then ${options.reason ?? null}::text
          else ${skippedReason} end,
        face_id = coalesce((select id from inserted), (select id from existing)),
        faces_detected = ${options.facesDetected}, code = null, updated_at = now()
      from item
      where batch_id = ${batchId} and item_key = ${key}
      returning status, face_id
    )
    select r.status, r.face_id, (select count(*)::int from replaced) as replaced
    from (select 1) one left join recorded r on true`;
}

// ---------------------------------------------------------------------------------------
// Visitors and faces as seen by a batch

/** Faces of a visitor from one image, of any model, without embeddings. */
export interface ImageFace {
  id: number;
  modelId: string;
  box: { x: number; y: number; width: number; height: number } | null;
}

/** Returns the id of the visitor with this externalId, or null. */
export async function findVisitorIdByExternalId(
  db: Database,
  externalId: string,
): Promise<string | null> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ id: string }[]>`
      select id from ${sql(db.schema)}.visitors where external_id = ${externalId}`,
  );
  return rows[0]?.id ?? null;
}

async function isBatchActive(db: Database, batchId: string): Promise<boolean> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ active: boolean }[]>`
      select status in ('planning', 'running') as active
      from ${sql(db.schema)}.batches where id = ${batchId}`,
  );
  return rows[0]?.active ?? false;
}

/**
 * Returns the id of the visitor with this externalId, creating it when there is none.
 * Safe under concurrency: when another job creates it first, the insert conflicts and
 * the existing visitor is read instead.
 */
export async function findOrCreateVisitor(
  db: Database,
  externalId: string,
  name: string,
): Promise<{ id: string; created: boolean }> {
  const found = await findOrCreateVisitors(db, [{ externalId, name }]);
  return found.get(externalId)!;
}

/**
 * findOrCreateVisitor for several visitors: one insert for all of them, and one read for
 * those another job created first. The first name given for an externalId is used.
 * Returns every externalId with its visitor. With `batchId`, visitors are created only
 * while that batch is planning or running (its row is locked for share, as when storing
 * faces), so a cancel's counts stay final. Then the result lacks the externalIds that
 * would have needed a new visitor. With `audit`, each visitor created gets a
 * `visitor.create` entry in the audit log, in the same statement.
 */
export async function findOrCreateVisitors(
  db: Database,
  visitors: readonly { externalId: string; name: string }[],
  batchId?: string,
  audit?: { actor: Actor; details?: Record<string, unknown> },
): Promise<Map<string, { id: string; created: boolean }>> {
  const { sql } = db;
  const schema = sql(db.schema);
  const names = new Map<string, string>();
  for (const { externalId, name } of visitors) {
    if (!names.has(externalId)) names.set(externalId, name);
  }
  const found = new Map<string, { id: string; created: boolean }>();
  // A visitor deleted between the conflict and the read makes one more round necessary.
  for (let attempt = 1; attempt <= 3 && found.size < names.size; attempt++) {
    const missing = [...names].filter(([externalId]) => !found.has(externalId));
    const records = missing.map(([external_id, name]) => ({ external_id, name }));
    const inserted = await withDatabaseErrors(
      db,
      () => sql<{ id: string; external_id: string }[]>`
        with inserted as (
          insert into ${schema}.visitors (external_id, name)
          select external_id, name
          from jsonb_to_recordset(${sql.json(records)}) as t(external_id text, name text)
          where ${batchId === undefined} or exists (
            select 1 from ${schema}.batches b
            where b.id = ${batchId ?? null} and b.status in ('planning', 'running')
            for share)
          on conflict on constraint visitors_external_id_key do nothing
          returning id, external_id
        )${
          audit
            ? sql`, audited as (
          insert into ${schema}.audit_log
            (key_id, action, target_type, target_id, request_id, details)
          select ${audit.actor.keyId}, 'visitor.create', 'visitor', id::text,
            ${audit.actor.requestId ?? null}, ${sql.json((audit.details ?? {}) as never)}
          from inserted
        )`
            : sql``
        }
        select id, external_id from inserted`,
    );
    // A batch that was cancelled or ended creates none: only the existing visitors are read.
    const batchEnded =
      batchId !== undefined && inserted.length === 0 && !(await isBatchActive(db, batchId));
    for (const row of inserted) found.set(row.external_id, { id: row.id, created: true });
    const conflicted = missing
      .map(([externalId]) => externalId)
      .filter((externalId) => !found.has(externalId));
    if (conflicted.length === 0) break;
    const existing = await withDatabaseErrors(
      db,
      () => sql<{ id: string; external_id: string }[]>`
        select id, external_id from ${schema}.visitors
        where external_id = any(${conflicted}::text[])`,
    );
    for (const row of existing) found.set(row.external_id, { id: row.id, created: false });
    if (batchEnded) return found;
  }
  if (found.size < names.size) {
    const externalId = [...names.keys()].find((id) => !found.has(id))!;
    throw new FaceGateError(
      'DEPENDENCY_UNAVAILABLE',
      `visitor with externalId ${JSON.stringify(externalId)} kept being created and deleted concurrently; retry`,
    );
  }
  return found;
}

/**
 * Moves batch items from one external id to another (a visitor's new id, or null), so
 * that the items of a visitor stay linked to it for erasure. Returns how many moved.
 */
export async function renameBatchItemsExternalId(
  db: Database,
  from: string,
  to: string | null,
): Promise<number> {
  const { sql } = db;
  const result = await withDatabaseErrors(
    db,
    () => sql`
      update ${sql(db.schema)}.batch_items set external_id = ${to}, updated_at = now()
      where external_id = ${from}`,
  );
  return result.count;
}

/**
 * Returns the visitor with this externalId and its faces, of every model, from the image
 * with this SHA-256, in one query. Returns null when no visitor has the externalId.
 */
export async function findVisitorImageFaces(
  db: Database,
  externalId: string,
  imageSha256: Buffer,
): Promise<{ visitorId: string; faces: ImageFace[] } | null> {
  return (await findVisitorsImageFaces(db, [{ externalId, imageSha256 }]))[0]!;
}

/**
 * findVisitorImageFaces for several pairs of externalId and image, in one query. The
 * result at index i belongs to lookups[i].
 */
export async function findVisitorsImageFaces(
  db: Database,
  lookups: readonly { externalId: string; imageSha256: Buffer }[],
): Promise<({ visitorId: string; faces: ImageFace[] } | null)[]> {
  if (lookups.length === 0) return [];
  const { sql } = db;
  const schema = sql(db.schema);
  const records = lookups.map(({ externalId, imageSha256 }, index) => ({
    n: index,
    external_id: externalId,
    sha: imageSha256.toString('hex'),
  }));
  const rows = await withDatabaseErrors(
    db,
    () => sql<
      {
        n: number;
        visitor_id: string;
        id: string | null;
        model_id: string | null;
        box: ImageFace['box'];
      }[]
    >`
      select t.n, v.id as visitor_id, f.id, f.model_id, f.box
      from jsonb_to_recordset(${sql.json(records)}) as t(n integer, external_id text, sha text)
      join ${schema}.visitors v on v.external_id = t.external_id
      left join ${schema}.faces f
        on f.visitor_id = v.id and f.image_sha256 = decode(t.sha, 'hex')
      order by t.n, f.id`,
  );
  const answers: ({ visitorId: string; faces: ImageFace[] } | null)[] = lookups.map(() => null);
  for (const row of rows) {
    const answer = (answers[row.n] ??= { visitorId: row.visitor_id, faces: [] });
    if (row.id !== null) {
      answer.faces.push({ id: bigintToNumber(row.id), modelId: row.model_id!, box: row.box });
    }
  }
  return answers;
}

/** Lists the visitor's faces from the image with this SHA-256, of every model. */
export async function listFacesByImage(
  db: Database,
  visitorId: string,
  imageSha256: Buffer,
): Promise<ImageFace[]> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ id: string; model_id: string; box: ImageFace['box'] }[]>`
      select id, model_id, box from ${sql(db.schema)}.faces
      where visitor_id = ${visitorId} and image_sha256 = ${imageSha256}
      order by id`,
  );
  return rows.map((row) => ({ id: bigintToNumber(row.id), modelId: row.model_id, box: row.box }));
}

// ---------------------------------------------------------------------------------------
// Table sources

/**
 * One part of an identifier as written in configuration: unquoted (folded to lower case,
 * as PostgreSQL does) or double-quoted (kept as written). Quoted parts are limited to
 * letters, digits, underscore, dollar, space and hyphen, so no quote, dot or semicolon
 * can reach SQL text. The parts are then quoted with the postgres client's escaping.
 */
const UNQUOTED_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;
const QUOTED_IDENTIFIER = /^"([A-Za-z0-9_$ -]{1,63})"$/;

/** A table source with its identifiers parsed into the names PostgreSQL resolves. */
export interface ResolvedTableSource {
  /** Schema then table, or the table alone (resolved through search_path). */
  table: string[];
  idColumn: string;
  nameColumn: string;
  imageColumn: string;
  imageEncoding: TableImageEncoding;
}

function parseIdentifierPart(part: string, label: string, whole: string): string {
  if (UNQUOTED_IDENTIFIER.test(part)) return part.toLowerCase();
  const quoted = QUOTED_IDENTIFIER.exec(part);
  if (quoted) return quoted[1]!;
  throw new FaceGateError(
    'INVALID_REQUEST',
    `invalid ${label} ${JSON.stringify(whole)}: each name part must be a plain identifier ` +
      `(letters, digits, _ and $, not starting with a digit) or a double-quoted name of ` +
      `letters, digits, _, $, space and -`,
    { details: { [label]: whole } },
  );
}

/**
 * Parses a possibly schema-qualified, possibly quoted table name (`visitors`,
 * `public."Visitor"`). Throws FaceGateError 'INVALID_REQUEST' for anything else.
 */
export function parseTableName(name: string): string[] {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
    throw new FaceGateError('INVALID_REQUEST', 'table must be a name of 1 to 200 characters');
  }
  const parts = name.split('.');
  if (parts.length > 2) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `invalid table ${JSON.stringify(name)}: expected table or schema.table`,
    );
  }
  return parts.map((part) => parseIdentifierPart(part, 'table', name));
}

/** Parses one column name. Throws FaceGateError 'INVALID_REQUEST' when it is not an identifier. */
export function parseColumnName(name: string, label = 'column'): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 100) {
    throw new FaceGateError('INVALID_REQUEST', `${label} must be a name of 1 to 100 characters`);
  }
  return parseIdentifierPart(name, label, name);
}

/** Validates every identifier of a table source. Throws FaceGateError 'INVALID_REQUEST'. */
export function resolveTableSource(source: TableSource): ResolvedTableSource {
  return {
    table: parseTableName(source.table),
    idColumn: parseColumnName(source.idColumn, 'idColumn'),
    nameColumn: parseColumnName(source.nameColumn, 'nameColumn'),
    imageColumn: parseColumnName(source.imageColumn, 'imageColumn'),
    imageEncoding: source.imageEncoding,
  };
}

function tableRef(sql: Sql, source: ResolvedTableSource): postgres.PendingQuery<postgres.Row[]> {
  return source.table.length === 2
    ? sql`${sql(source.table[0]!)}.${sql(source.table[1]!)}`
    : sql`${sql(source.table[0]!)}`;
}

/**
 * Rejects a table in facegate's own schema or in a system schema: a key that may start
 * batches must not read API key digests, the audit log or the catalog through a batch
 * report. Other tables are limited by what the service's database role may read.
 */
async function assertForeignTable(
  db: Database,
  source: ResolvedTableSource,
  tableText: string,
): Promise<void> {
  const { sql } = db;
  const qualified = source.table.map(quoteIdentifier).join('.');
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ schema: string }[]>`
      select n.nspname as schema
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.oid = to_regclass(${qualified})`,
  );
  const schema = rows[0]?.schema;
  if (
    schema === undefined ||
    schema === db.schema ||
    schema === 'information_schema' ||
    schema.startsWith('pg_')
  ) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `table source ${tableText} is in schema ${schema ?? 'unknown'}, which holds facegate's own or PostgreSQL's system tables; a batch reads a visitor table of another system`,
      { details: { table: tableText, schema: schema ?? null } },
    );
  }
}

const BYTEA_OID = 17;
const TEXT_OIDS: ReadonlySet<number> = new Set([25, 1042, 1043]); // text, char(n), varchar(n)

/** SQLSTATEs of a table or column that does not exist or cannot be read. */
const MISSING_OBJECT_SQLSTATES: ReadonlySet<string> = new Set([
  '42P01', // undefined_table
  '42703', // undefined_column
  '3F000', // invalid_schema_name
  '42501', // insufficient_privilege
]);

/**
 * Checks that the table and columns exist, are readable, and that the image column's
 * type fits the encoding (bytea for 'bytea', text for 'base64' and 'path'). Reads no row.
 * Throws FaceGateError 'INVALID_REQUEST' naming what is wrong.
 */
export async function checkTableSource(db: Database, source: TableSource): Promise<void> {
  const resolved = resolveTableSource(source);
  const { sql } = db;
  let columns: readonly { name: string; type: number }[];
  try {
    const result = await sql`
      select ${sql(resolved.idColumn)}, ${sql(resolved.nameColumn)}, ${sql(resolved.imageColumn)}
      from ${tableRef(sql, resolved)} limit 0`;
    columns = result.columns;
  } catch (error) {
    const described = describePostgresError(error);
    if (described && MISSING_OBJECT_SQLSTATES.has(described.sqlState)) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `table source ${source.table} cannot be read: ${(error as Error).message}`,
        { details: { table: source.table, sqlState: described.sqlState } },
      );
    }
    throw toDatabaseError(db, error);
  }

  await assertForeignTable(db, resolved, source.table);

  const imageType = columns[2]?.type;
  const fits =
    resolved.imageEncoding === 'bytea'
      ? imageType === BYTEA_OID
      : imageType !== undefined && TEXT_OIDS.has(imageType);
  if (!fits) {
    const expected = resolved.imageEncoding === 'bytea' ? 'bytea' : 'text or varchar';
    throw new FaceGateError(
      'INVALID_REQUEST',
      `imageColumn ${source.imageColumn} of ${source.table} has type oid ${imageType}; ` +
        `imageEncoding '${resolved.imageEncoding}' needs a ${expected} column`,
      { details: { imageColumn: source.imageColumn, typeOid: imageType } },
    );
  }
}

/** Row of a table source as read for planning; `path` is set only for imageEncoding 'path'. */
export interface TableSourceRow {
  id: string | null;
  name: string | null;
  path: string | null;
}

/**
 * Yields the rows of a table source, `chunkSize` at a time, through a server-side cursor
 * (one snapshot, one pooled connection until the loop ends). Image bytes are not read
 * here; `readTableImage` reads them one row at a time.
 */
export async function* streamTableSourceRows(
  db: Database,
  source: TableSource,
  chunkSize: number,
): AsyncGenerator<TableSourceRow[], void, undefined> {
  const resolved = resolveTableSource(source);
  const { sql } = db;
  const path =
    resolved.imageEncoding === 'path'
      ? sql`${sql(resolved.imageColumn)}::text as path`
      : sql`null::text as path`;
  const rows = sql<TableSourceRow[]>`
    select ${sql(resolved.idColumn)}::text as id, ${sql(resolved.nameColumn)}::text as name, ${path}
    from ${tableRef(sql, resolved)}`.cursor(chunkSize);
  try {
    for await (const chunk of rows) yield chunk;
  } catch (error) {
    throw toDatabaseError(db, error);
  }
}

/**
 * Reads the image of one row of a bytea or base64 table source, identified by the id
 * column's value as text. Values longer than `maxImageBytes` are not transferred.
 * Throws FaceGateError 'NOT_FOUND' for a row that is gone, 'INVALID_REQUEST' when the id
 * matches several rows or the base64 is malformed, 'IMAGE_EMPTY' and 'IMAGE_TOO_LARGE'.
 */
export async function readTableImage(
  db: Database,
  source: TableSource,
  id: string,
  maxImageBytes: number,
): Promise<Buffer> {
  const resolved = resolveTableSource(source);
  if (resolved.imageEncoding === 'path') {
    throw new FaceGateError('INTERNAL', 'readTableImage called for a path-encoded table source');
  }
  const { sql } = db;
  const image = sql(resolved.imageColumn);
  const base64 = resolved.imageEncoding === 'base64';
  // Base64 takes 4 characters per 3 bytes; the slack admits line breaks and a data: prefix.
  const maxStoredBytes = base64 ? Math.ceil(maxImageBytes / 3) * 4 + 4096 : maxImageBytes;
  const value = base64 ? sql`convert_to(${image}, 'UTF8')` : image;

  // The text parameter is compared with the id column's own type, so its index can serve.
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ size: number | null; bytes: Buffer | null }[]>`
      select octet_length(${image}) as size,
        case when octet_length(${image}) <= ${maxStoredBytes} then ${value} end as bytes
      from ${tableRef(sql, resolved)}
      where ${sql(resolved.idColumn)} = ${id}
      limit 2`,
  );
  const where = `row ${JSON.stringify(id)} of ${source.table}`;
  if (rows.length === 0) throw new FaceGateError('NOT_FOUND', `${where} no longer exists`);
  if (rows.length > 1) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `several rows of ${source.table} have ${source.idColumn} ${JSON.stringify(id)}; the id column must identify one row`,
    );
  }
  const row = rows[0]!;
  if (row.size === null || row.size === 0) {
    throw new FaceGateError('IMAGE_EMPTY', `${where} has no image in ${source.imageColumn}`);
  }
  if (row.bytes === null) {
    throw new FaceGateError(
      'IMAGE_TOO_LARGE',
      `${where} holds ${row.size} bytes in ${source.imageColumn}; the limit is ${maxStoredBytes} bytes`,
      { details: { sizeBytes: row.size, maxBytes: maxStoredBytes } },
    );
  }
  return base64 ? decodeBase64Image(row.bytes.toString('utf8'), where) : row.bytes;
}

const DATA_URL_PREFIX = /^data:[\w/+.-]*;base64,/;
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64Image(text: string, where: string): Buffer {
  const compact = text.trim().replace(DATA_URL_PREFIX, '').replace(/\s+/g, '');
  if (!BASE64_TEXT.test(compact) || compact.length % 4 === 1) {
    throw new FaceGateError('INVALID_REQUEST', `${where} is not valid base64`);
  }
  const bytes = Buffer.from(compact, 'base64');
  if (bytes.length === 0)
    throw new FaceGateError('IMAGE_EMPTY', `${where} contains an empty image`);
  return bytes;
}
