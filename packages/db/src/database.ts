import { FaceGateError } from '@facegate/errors';
import postgres from 'postgres';

import { withDatabaseErrors } from './errors.js';

/** The `postgres` client type used throughout this package (no custom types). */
export type Sql = postgres.Sql;

/** An open connection pool bound to the schema that contains facegate's tables. */
export interface Database {
  readonly sql: Sql;
  /** Schema name as configured, validated but unquoted; queries quote it with `sql(schema)`. */
  readonly schema: string;
  /** Hosts and ports as `host:port` (or the socket path), for error messages. */
  readonly endpoint: string;
  /** Closes every connection, including the LISTEN connection; safe to call twice. */
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** Connection URL, e.g. `postgres://user@127.0.0.1:5432/facegate`. */
  url: string;
  /** Schema that contains the tables; created by `migrate`. Default `facegate`. */
  schema?: string;
  /** Maximum connections in the pool, not counting the LISTEN connection. Default 10. */
  maxConnections?: number;
  /** Time allowed to open one connection, in seconds. Default 5. */
  connectTimeoutSeconds?: number;
  /** Receives server notices; by default they are dropped. */
  onNotice?: (notice: postgres.Notice) => void;
}

const SCHEMA_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Suffix of the LISTEN/NOTIFY channel, appended to the schema name by the feed trigger. */
export const CHANGE_CHANNEL_SUFFIX = '_face_changes';

/**
 * PostgreSQL rejects channel names of 64 bytes or more, so the schema name must leave
 * room for the channel suffix.
 */
const MAX_SCHEMA_LENGTH = 63 - CHANGE_CHANNEL_SUFFIX.length;

const CLOSE_TIMEOUT_SECONDS = 5;

/**
 * Validates a schema name from configuration and returns it unchanged.
 * Throws FaceGateError 'CONFIG_INVALID' naming the value when it is not a plain identifier.
 */
export function validateSchemaName(schema: string): string {
  if (typeof schema !== 'string' || !SCHEMA_PATTERN.test(schema)) {
    throw new FaceGateError(
      'CONFIG_INVALID',
      `invalid database schema name ${JSON.stringify(schema)}: use letters, digits and underscores, starting with a letter or underscore`,
      { details: { schema } },
    );
  }
  if (schema.length > MAX_SCHEMA_LENGTH) {
    throw new FaceGateError(
      'CONFIG_INVALID',
      `database schema name ${JSON.stringify(schema)} has ${schema.length} characters; the maximum is ${MAX_SCHEMA_LENGTH} so that the channel "<schema>${CHANGE_CHANNEL_SUFFIX}" fits PostgreSQL's 63-byte name limit`,
      { details: { schema } },
    );
  }
  if (schema.startsWith('pg_')) {
    throw new FaceGateError(
      'CONFIG_INVALID',
      `invalid database schema name ${JSON.stringify(schema)}: PostgreSQL reserves the prefix "pg_" for system schemas`,
      { details: { schema } },
    );
  }
  return schema;
}

/** Quotes an identifier for SQL text that cannot use the `sql(name)` helper (migrations). */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Opens a connection pool. No connection is made until the first query, so a wrong URL or
 * a server that is down shows up at the first query or `ping`, not here.
 * Throws FaceGateError 'CONFIG_INVALID' for a bad schema name, pool size or timeout.
 *
 * NOTE: `postgres` 3.4.7 can lose a query sent on a connection between its socket error
 * and its close (reproduced here after pg_terminate_backend). That query and every later
 * one on the same connection then never settle. `close` also waits its full timeout after
 * a connection failed mid-query (upstream porsager/postgres issues 1097 and 1130). Until a
 * fixed release, use `ping` with its timeout for readiness, and restart a process whose
 * pings keep failing.
 */
export function createDatabase(options: DatabaseOptions): Database {
  const schema = validateSchemaName(options.schema ?? 'facegate');
  const maxConnections = options.maxConnections ?? 10;
  const connectTimeoutSeconds = options.connectTimeoutSeconds ?? 5;

  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new FaceGateError(
      'CONFIG_INVALID',
      `maxConnections is ${maxConnections}; expected an integer of at least 1`,
    );
  }
  if (!(connectTimeoutSeconds > 0) || !Number.isFinite(connectTimeoutSeconds)) {
    throw new FaceGateError(
      'CONFIG_INVALID',
      `connectTimeoutSeconds is ${connectTimeoutSeconds}; expected a positive number of seconds`,
    );
  }

  let sql: Sql;
  try {
    sql = postgres(options.url, {
      max: maxConnections,
      connect_timeout: connectTimeoutSeconds,
      onnotice: options.onNotice ?? (() => {}),
      connection: { application_name: 'facegate' },
    });
  } catch (error) {
    // The URL is parsed here; its text is left out of the message because it may contain a password.
    throw new FaceGateError('CONFIG_INVALID', 'invalid PostgreSQL connection URL', {
      cause: error,
    });
  }

  let closing: Promise<void> | undefined;
  return {
    sql,
    schema,
    endpoint: describeEndpoint(sql),
    close() {
      closing ??= sql.end({ timeout: CLOSE_TIMEOUT_SECONDS });
      return closing;
    },
  };
}

function describeEndpoint(sql: Sql): string {
  const { host, port, path } = sql.options as typeof sql.options & { path?: string };
  if (path) return path;
  return host.map((name, index) => `${name}:${port[index] ?? port[0] ?? 5432}`).join(',');
}

/** Default time `ping` waits for a reply, longer than the default connect timeout. */
export const DEFAULT_PING_TIMEOUT_MS = 10_000;

/**
 * Runs `select 1` for readiness checks.
 * Throws FaceGateError 'DEPENDENCY_UNAVAILABLE' when PostgreSQL cannot be reached or does
 * not reply within `timeoutMs`.
 */
export async function ping(db: Database, timeoutMs = DEFAULT_PING_TIMEOUT_MS): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(
        new FaceGateError(
          'DEPENDENCY_UNAVAILABLE',
          `PostgreSQL at ${db.endpoint} did not respond to a ping within ${timeoutMs} ms`,
          { details: { dependency: 'postgresql', endpoint: db.endpoint, timeoutMs } },
        ),
      );
    }, timeoutMs);
  });

  try {
    await Promise.race([withDatabaseErrors(db, () => db.sql`select 1`), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `work` in one transaction, which commits when `work` resolves and rolls back when
 * it throws. The Database passed to `work` sends every query through the transaction, so
 * repository functions called with it apply atomically.
 */
export async function transaction<T>(db: Database, work: (tx: Database) => Promise<T>): Promise<T> {
  return withDatabaseErrors(db, async () => {
    const result = await db.sql.begin((sql) =>
      work({
        sql,
        schema: db.schema,
        endpoint: db.endpoint,
        close: () => {
          throw new FaceGateError('INTERNAL', 'close the Database, not a transaction inside it');
        },
      }),
    );
    return result as T;
  });
}
