import { FaceGateError } from '@facegate/errors';

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * True for a uuid in the usual hyphenated form. Repositories treat any other string as
 * an id that matches nothing, instead of sending it and getting PostgreSQL error 22P02.
 */
export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID_PATTERN.test(value);
}

/** True for a value that can be a `bigint` identity id (a face id or a feed seq). */
export function isPositiveSafeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/**
 * Converts a `bigint` column, which the client returns as a string, to a number.
 * Identity values stay far below 2^53, so no precision is lost in practice.
 */
export function bigintToNumber(value: string | number | bigint): number {
  return typeof value === 'number' ? value : Number(value);
}

/** A position in a list ordered by (created_at, id): the row's time in microseconds and its id. */
export interface TimeCursor {
  createdAtMicros: string;
  id: string;
}

/**
 * Encodes the position after a row for keyset pagination. `createdAtMicros` is the row's
 * created_at as whole microseconds since the epoch, read in SQL because a JavaScript Date
 * keeps milliseconds only and would skip or repeat rows created in the same millisecond.
 */
export function encodeTimeCursor(createdAtMicros: string, id: string): string {
  return Buffer.from(`${createdAtMicros}/${id}`, 'utf8').toString('base64url');
}

/** Decodes a cursor of encodeTimeCursor; throws FaceGateError 'INVALID_REQUEST' naming `list`. */
export function decodeTimeCursor(cursor: string, list: string): TimeCursor {
  const text = typeof cursor === 'string' ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const [createdAtMicros, id, ...rest] = text.split('/');
  if (rest.length > 0 || !createdAtMicros || !/^-?\d{1,18}$/.test(createdAtMicros) || !isUuid(id)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `invalid ${list} cursor ${JSON.stringify(cursor)}; pass the nextCursor of the previous page as it came`,
    );
  }
  return { createdAtMicros, id };
}
