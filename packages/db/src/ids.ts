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
