import { FaceGateError, isFaceGateError } from '@facegate/errors';

import type { Database } from './database.js';

/** Socket errors from Node and connection errors raised by the `postgres` client itself. */
const CONNECTION_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'CONNECTION_ENDED',
]);

/** SQLSTATEs that mean the server cannot serve us right now, not that the query is wrong. */
const UNAVAILABLE_SQLSTATES: ReadonlySet<string> = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up or in recovery)
  '57P05', // idle_session_timeout
  '53300', // too_many_connections
]);

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

function firstInnerErrorCode(error: unknown): string | undefined {
  return error instanceof AggregateError ? errorCode(error.errors[0]) : undefined;
}

function isPostgresServerError(error: unknown): boolean {
  return error instanceof Error && error.name === 'PostgresError';
}

/**
 * True when the error means PostgreSQL could not be reached or dropped the connection,
 * so retrying later can succeed. Accepts both raw client errors and the FaceGateError
 * that this package raises for them.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (isFaceGateError(error)) return error.code === 'DEPENDENCY_UNAVAILABLE';

  // Node reports a refused connection to a name with several addresses as an AggregateError.
  if (error instanceof AggregateError && error.errors.some(isDatabaseUnavailable)) return true;

  const code = errorCode(error);
  if (code === undefined) return false;
  if (isPostgresServerError(error)) {
    return UNAVAILABLE_SQLSTATES.has(code) || code.startsWith('08'); // class 08: connection exception
  }
  return CONNECTION_ERROR_CODES.has(code);
}

/** Wraps an unavailability error in FaceGateError 'DEPENDENCY_UNAVAILABLE'; returns others unchanged. */
export function toDatabaseError(db: Database, error: unknown): unknown {
  if (isFaceGateError(error) || !isDatabaseUnavailable(error)) return error;

  const code = errorCode(error) ?? firstInnerErrorCode(error) ?? 'unknown';
  const reason = error instanceof Error ? error.message : String(error);
  return new FaceGateError(
    'DEPENDENCY_UNAVAILABLE',
    `PostgreSQL at ${db.endpoint} is unavailable (${code}): ${reason}; check that the server is running and reachable, then retry`,
    { details: { dependency: 'postgresql', endpoint: db.endpoint, code }, cause: error },
  );
}

/** Runs a database operation, turning connection failures into 'DEPENDENCY_UNAVAILABLE'. */
export async function withDatabaseErrors<T>(db: Database, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw toDatabaseError(db, error);
  }
}

/** Returns the SQLSTATE and constraint name of an error raised by the server, or undefined for other errors. */
export function describePostgresError(
  error: unknown,
): { sqlState: string; constraint: string | undefined } | undefined {
  if (!isPostgresServerError(error)) return undefined;
  const sqlState = errorCode(error);
  if (sqlState === undefined) return undefined;
  const constraint = (error as { constraint_name?: string }).constraint_name;
  return { sqlState, constraint };
}
