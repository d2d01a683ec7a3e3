import { FaceGateError } from '@facegate/errors';
import type postgres from 'postgres';

import { type Actor, recordAudit } from './audit.js';
import { type Database, type Sql, transaction } from './database.js';
import { decodeEmbedding, encodeEmbedding } from './embedding.js';
import { describePostgresError, toDatabaseError, withDatabaseErrors } from './errors.js';
import { bigintToNumber, isPositiveSafeInteger, isUuid } from './ids.js';

/** Face box in pixels of the source image. */
export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A stored face without its embedding. */
export interface Face {
  /** Identity id, also the face's label in the matcher's HNSW index. */
  id: number;
  visitorId: string;
  modelId: string;
  /** Length of the embedding. */
  dim: number;
  detectionScore: number | null;
  box: FaceBox | null;
  /** Shorter side of the box, in pixels. */
  faceSize: number | null;
  imageSha256: Buffer;
  createdAt: Date;
}

export interface NewFace {
  visitorId: string;
  modelId: string;
  embedding: Float32Array;
  detectionScore: number | null;
  box: FaceBox | null;
  faceSize: number | null;
  /** SHA-256 of the enrolled image, 32 bytes. */
  imageSha256: Buffer;
  /** When set, a new face is recorded in the audit log by the same statement that stores it. */
  audit?: { actor: Actor; details?: Record<string, unknown> };
}

export interface InsertFaceResult {
  face: Face;
  /** False when the visitor already had a face of this model from the same image. */
  created: boolean;
}

export interface FaceEmbedding {
  faceId: number;
  visitorId: string;
  embedding: Float32Array;
}

export interface StoredEmbedding extends FaceEmbedding {
  modelId: string;
}

export const DEFAULT_EMBEDDING_BATCH_SIZE = 1000;

const SHA256_BYTES = 32;

/**
 * A concurrent delete can remove the conflicting row between the insert and the read
 * that follows it. Each attempt would have to lose that race again, so three are plenty.
 */
const MAX_INSERT_ATTEMPTS = 3;

interface FaceRow {
  id: string;
  visitor_id: string;
  model_id: string;
  dim: number;
  detection_score: number | null;
  box: FaceBox | null;
  face_size: number | null;
  image_sha256: Buffer;
  created_at: Date;
}

interface EmbeddingRow {
  id: string;
  visitor_id: string;
  model_id: string;
  dim: number;
  embedding: Buffer;
}

function toFace(row: FaceRow): Face {
  return {
    id: bigintToNumber(row.id),
    visitorId: row.visitor_id,
    modelId: row.model_id,
    dim: row.dim,
    detectionScore: row.detection_score,
    box: row.box,
    faceSize: row.face_size,
    imageSha256: row.image_sha256,
    createdAt: row.created_at,
  };
}

function toFaceEmbedding(row: EmbeddingRow): FaceEmbedding {
  return {
    faceId: bigintToNumber(row.id),
    visitorId: row.visitor_id,
    embedding: decodeEmbedding(row.embedding, row.dim),
  };
}

function faceColumns(sql: Sql): postgres.PendingQuery<postgres.Row[]> {
  return sql`
    id, visitor_id, model_id, dim, detection_score, box, face_size, image_sha256, created_at`;
}

/**
 * Stores a face of a visitor. Enrolling the same image again for the same visitor and
 * model returns the stored face with `created: false` and changes nothing.
 * Throws FaceGateError 'NOT_FOUND' when the visitor does not exist and 'INVALID_REQUEST'
 * for a malformed field.
 */
export async function insertFace(db: Database, input: NewFace): Promise<InsertFaceResult> {
  validateNewFace(input);
  const embedding = encodeEmbedding(input.embedding);
  if (!isUuid(input.visitorId)) throw visitorNotFound(input.visitorId);

  for (let attempt = 1; attempt <= MAX_INSERT_ATTEMPTS; attempt++) {
    const inserted = await insertFaceRow(db, input, embedding);
    if (inserted) return { face: toFace(inserted), created: true };

    const existing = await findFaceByImage(db, input);
    if (existing) return { face: toFace(existing), created: false };
  }
  throw new FaceGateError(
    'CONFLICT',
    `face of visitor ${input.visitorId} from the same image kept being deleted while it was enrolled; retry`,
    { details: { visitorId: input.visitorId, modelId: input.modelId } },
  );
}

async function insertFaceRow(
  db: Database,
  input: NewFace,
  embedding: Buffer,
): Promise<FaceRow | undefined> {
  const { sql } = db;
  try {
    const audit = input.audit;
    const rows = await withDatabaseErrors(
      db,
      () => sql<FaceRow[]>`
        with inserted as (
          insert into ${sql(db.schema)}.faces
            (visitor_id, model_id, dim, embedding, detection_score, box, face_size, image_sha256)
          values (
            ${input.visitorId},
            ${input.modelId},
            ${input.embedding.length},
            ${embedding},
            ${input.detectionScore},
            ${input.box === null ? null : sql.json(boxToJson(input.box))},
            ${input.faceSize},
            ${input.imageSha256}
          )
          on conflict on constraint faces_visitor_image_key do nothing
          returning ${faceColumns(sql)}
        )${
          audit
            ? sql`, audited as (
          insert into ${sql(db.schema)}.audit_log
            (key_id, action, target_type, target_id, request_id, details)
          select ${audit.actor.keyId}, 'face.enrol', 'face', id::text,
            ${audit.actor.requestId ?? null},
            ${sql.json({ visitorId: input.visitorId, ...audit.details } as never)}
          from inserted
        )`
            : sql``
        }
        select * from inserted`,
    );
    return rows[0];
  } catch (error) {
    const violation = describePostgresError(error);
    if (violation?.sqlState === '23503' && violation.constraint === 'faces_visitor_id_fkey') {
      throw visitorNotFound(input.visitorId, error);
    }
    throw error;
  }
}

async function findFaceByImage(db: Database, input: NewFace): Promise<FaceRow | undefined> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<FaceRow[]>`
      select ${faceColumns(sql)} from ${sql(db.schema)}.faces
      where visitor_id = ${input.visitorId}
        and model_id = ${input.modelId}
        and image_sha256 = ${input.imageSha256}`,
  );
  return rows[0];
}

/** Lists a visitor's faces in id order, without embeddings; empty for an unknown visitor. */
export async function listFaces(db: Database, visitorId: string): Promise<Face[]> {
  if (!isUuid(visitorId)) return [];
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<FaceRow[]>`
      select ${faceColumns(sql)} from ${sql(db.schema)}.faces
      where visitor_id = ${visitorId}
      order by id`,
  );
  return rows.map(toFace);
}

/** Deletes one face of a visitor. Returns false when the visitor has no face with that id. */
export async function deleteFace(
  db: Database,
  visitorId: string,
  faceId: number,
): Promise<boolean> {
  if (!isUuid(visitorId) || !isPositiveSafeInteger(faceId)) return false;
  const { sql } = db;

  const result = await withDatabaseErrors(
    db,
    () => sql`
      delete from ${sql(db.schema)}.faces
      where id = ${faceId} and visitor_id = ${visitorId}`,
  );
  return result.count > 0;
}

/**
 * Deletes one face of a visitor with its audit entry, in one transaction, and unlinks
 * batch items that stored it. Returns the feed seq of the deletion, or null when the
 * visitor has no face with that id.
 */
export async function eraseFace(
  db: Database,
  visitorId: string,
  faceId: number,
  actor: Actor,
): Promise<{ seq: number } | null> {
  if (!isUuid(visitorId) || !isPositiveSafeInteger(faceId)) return null;

  return transaction(db, async (tx) => {
    const { sql } = tx;
    const schema = sql(tx.schema);
    const deleted = await sql`
      delete from ${schema}.faces where id = ${faceId} and visitor_id = ${visitorId}`;
    if (deleted.count === 0) return null;

    // The feed trigger holds the feed lock until commit, so the highest seq is this deletion's.
    const rows = await sql<{ seq: string }[]>`
      select coalesce(max(seq), 0) as seq from ${schema}.face_changes`;
    await sql`update ${schema}.batch_items set face_id = null where face_id = ${faceId}`;
    await recordAudit(tx, actor, {
      action: 'face.delete',
      targetType: 'face',
      targetId: String(faceId),
      details: { visitorId },
    });
    return { seq: bigintToNumber(rows[0]!.seq) };
  });
}

/** Counts stored faces per embedding model. */
export async function countFacesByModel(db: Database): Promise<Map<string, number>> {
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ model_id: string; face_count: string }[]>`
      select model_id, count(*) as face_count from ${sql(db.schema)}.faces
      group by model_id`,
  );
  return new Map(rows.map((row) => [row.model_id, Number(row.face_count)]));
}

/**
 * Yields every face of a model in id order, `batchSize` faces at a time, through a
 * server-side cursor, for index rebuilds. The rows come from one snapshot taken when the
 * first batch is requested, and the cursor keeps one pooled connection until the loop ends.
 *
 * To rebuild and then follow the feed without a gap, read `maxChangeSeq` before the first
 * batch and apply `readChanges` from that seq afterwards. A face added between the two
 * reads is then both yielded here and replayed from the feed, so apply changes
 * idempotently.
 */
export async function* streamEmbeddings(
  db: Database,
  modelId: string,
  batchSize: number = DEFAULT_EMBEDDING_BATCH_SIZE,
): AsyncGenerator<FaceEmbedding[], void, undefined> {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `batchSize is ${batchSize}; expected a positive integer`,
    );
  }
  const { sql } = db;

  const batches = sql<EmbeddingRow[]>`
    select id, visitor_id, model_id, dim, embedding from ${sql(db.schema)}.faces
    where model_id = ${modelId}
    order by id`.cursor(batchSize);
  try {
    for await (const rows of batches) {
      yield rows.map(toFaceEmbedding);
    }
  } catch (error) {
    throw toDatabaseError(db, error);
  }
}

/** Reads one face's embedding, or null when the face does not exist. */
export async function getEmbedding(db: Database, faceId: number): Promise<StoredEmbedding | null> {
  if (!isPositiveSafeInteger(faceId)) return null;
  const { sql } = db;

  const rows = await withDatabaseErrors(
    db,
    () => sql<EmbeddingRow[]>`
      select id, visitor_id, model_id, dim, embedding from ${sql(db.schema)}.faces
      where id = ${faceId}`,
  );
  const row = rows[0];
  return row ? { ...toFaceEmbedding(row), modelId: row.model_id } : null;
}

export function visitorNotFound(visitorId: string, cause?: unknown): FaceGateError {
  return new FaceGateError('NOT_FOUND', `visitor ${visitorId} not found`, {
    details: { visitorId },
    cause,
  });
}

export function validateNewFace(input: NewFace): void {
  if (typeof input.modelId !== 'string' || input.modelId === '') {
    throw new FaceGateError('INVALID_REQUEST', 'face modelId must be a non-empty string');
  }
  if (!Buffer.isBuffer(input.imageSha256) || input.imageSha256.length !== SHA256_BYTES) {
    const length = Buffer.isBuffer(input.imageSha256) ? input.imageSha256.length : 'no';
    throw new FaceGateError(
      'INVALID_REQUEST',
      `imageSha256 has ${length} bytes; expected a Buffer of ${SHA256_BYTES} bytes`,
    );
  }
  if (input.detectionScore !== null && !Number.isFinite(input.detectionScore)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `detectionScore is ${input.detectionScore}; expected a finite number or null`,
    );
  }
  if (input.faceSize !== null && !(Number.isInteger(input.faceSize) && input.faceSize >= 0)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `faceSize is ${input.faceSize}; expected a non-negative integer number of pixels or null`,
    );
  }
  if (input.box !== null) validateBox(input.box);
}

/** Keeps only the four box fields, so extra properties of the caller's object are not stored. */
export function boxToJson(box: FaceBox): Record<keyof FaceBox, number> {
  return { x: box.x, y: box.y, width: box.width, height: box.height };
}

function validateBox(box: FaceBox): void {
  const fields = ['x', 'y', 'width', 'height'] as const;
  const invalid = fields.filter((field) => !Number.isFinite(box?.[field]));
  if (invalid.length > 0 || box.width < 0 || box.height < 0) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `face box ${JSON.stringify(box)} is invalid; expected finite x, y and non-negative width, height`,
    );
  }
}
