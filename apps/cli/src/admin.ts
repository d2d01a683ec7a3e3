/**
 * `fr keys ...` and `fr db ...`: key management and schema migration straight against
 * PostgreSQL (DATABASE_URL, or DATABASE_MIGRATION_URL for migrations), for operators
 * setting up a deployment before any gateway runs.
 */
import { generateApiKey, parseScopes } from '@facegate/auth';
import type { Config } from '@facegate/config';
import {
  type Database,
  createDatabase,
  grantServiceAccess,
  insertApiKey,
  listApiKeys,
  migrate,
  revokeApiKey,
  schemaVersion,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';

import { parseArgs } from './commands.js';

export const KEYS_USAGE = `usage:
  fr keys create --name NAME --scopes recognize[+enrol][+admin]
                                 create a key; it is printed once and stored only as a hash
  fr keys list                   list keys (ids, names, scopes, revocation), never secrets
  fr keys revoke <id>            revoke a key on every gateway within a second`;

export const DB_USAGE = `usage:
  fr db migrate [--grant ROLE]   apply pending migrations as the schema owner
                                 (DATABASE_MIGRATION_URL, else DATABASE_URL), and grant
                                 ROLE the rights the service needs and no schema changes`;

const CLI_ACTOR = { keyId: 'cli' } as const;

function usageError(message: string, command: 'keys' | 'db'): FaceGateError {
  return new FaceGateError('INVALID_REQUEST', `${message}; see 'fr ${command} --help'`);
}

async function withDatabase<T>(url: string, config: Config, work: (db: Database) => Promise<T>) {
  const db = createDatabase({ url, schema: config.databaseSchema, maxConnections: 1 });
  try {
    // A mistyped DATABASE_SCHEMA must not create a schema that no gateway reads.
    if ((await schemaVersion(db)) === 0) {
      throw new FaceGateError(
        'NOT_FOUND',
        `schema ${config.databaseSchema} has no facegate tables; set DATABASE_SCHEMA (and DATABASE_URL) to those of the service, or run 'fr db migrate' first`,
      );
    }
    await migrate(db);
    return await work(db);
  } finally {
    await db.close();
  }
}

function printHelp(usage: string): never {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

export async function keysCommand(config: Config, args: readonly string[]): Promise<unknown> {
  const [action, ...rest] = args;
  if (action === '--help' || action === 'help') printHelp(KEYS_USAGE);
  const { options, positional } = parseArgs(rest, ['name', 'scopes']);

  if (action === 'create') {
    const name = options.get('name');
    const scopeText = options.get('scopes');
    if (!name?.trim() || !scopeText) throw usageError('--name and --scopes are required', 'keys');
    if (name.trim().length > 200) {
      throw usageError(`--name has ${name.trim().length} characters; the limit is 200`, 'keys');
    }
    const scopes = parseScopes(scopeText);
    const generated = generateApiKey();
    const record = await withDatabase(config.databaseUrl, config, (db) =>
      insertApiKey(
        db,
        {
          id: generated.id,
          name: name.trim(),
          keySha256: generated.sha256,
          scopes,
          createdBy: 'cli',
        },
        CLI_ACTOR,
      ),
    );
    return { ...record, key: generated.key, note: 'store the key now: it is not shown again' };
  }
  if (action === 'list') {
    return withDatabase(config.databaseUrl, config, (db) => listApiKeys(db));
  }
  if (action === 'revoke') {
    const [id] = positional;
    if (!id) throw usageError('the key id is missing', 'keys');
    const record = await withDatabase(config.databaseUrl, config, (db) =>
      revokeApiKey(db, id, CLI_ACTOR),
    );
    if (!record) throw new FaceGateError('NOT_FOUND', `API key ${id} does not exist`);
    return record;
  }
  throw usageError(`unknown keys action '${action ?? ''}'`, 'keys');
}

export async function dbCommand(config: Config, args: readonly string[]): Promise<unknown> {
  const [action, ...rest] = args;
  if (action === '--help' || action === 'help') printHelp(DB_USAGE);
  if (action !== 'migrate') throw usageError(`unknown db action '${action ?? ''}'`, 'db');
  const { options } = parseArgs(rest, ['grant']);

  const url = config.databaseMigrationUrl ?? config.databaseUrl;
  const db = createDatabase({ url, schema: config.databaseSchema, maxConnections: 1 });
  try {
    const result = await migrate(db);
    const role = options.get('grant');
    if (role) await grantServiceAccess(db, role);
    return { schema: config.databaseSchema, ...result, granted: role ?? null };
  } finally {
    await db.close();
  }
}
