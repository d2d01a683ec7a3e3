/**
 * Schema migrations, applied in version order by `migrate`. PostgreSQL is the source of
 * truth for visitors and faces; each matcher's HNSW index is derived from `faces` and kept
 * current through the `face_changes` feed.
 */
import { FaceGateError } from '@facegate/errors';

import type { Database } from './database.js';
import { createDatabase, quoteIdentifier } from './database.js';
import { describePostgresError, withDatabaseErrors } from './errors.js';

export interface Migration {
  /** Position in the order of application; never reuse or renumber a released version. */
  version: number;
  name: string;
  /** Returns the SQL text; `schema` is the already quoted schema identifier. */
  sql(schema: string): string;
}

const createTables: Migration = {
  version: 1,
  name: 'create visitors, faces and the face change feed',
  sql: (schema) => `
create table ${schema}.visitors (
  id uuid primary key default gen_random_uuid(),
  external_id text constraint visitors_external_id_key unique,
  name text not null,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- Keyset pagination orders visitors by (created_at, id).
create index visitors_created_at_id_idx on ${schema}.visitors (created_at, id);

-- faces.id is the HNSW label, so it is never reused and never updated.
create table ${schema}.faces (
  id bigint generated always as identity primary key,
  visitor_id uuid not null
    constraint faces_visitor_id_fkey references ${schema}.visitors (id) on delete cascade,
  model_id text not null,
  dim smallint not null check (dim > 0),
  -- float32 little-endian values
  embedding bytea not null check (octet_length(embedding) = dim * 4),
  detection_score real,
  -- {x, y, width, height} in pixels of the source image
  box jsonb check (box is null or jsonb_typeof(box) = 'object'),
  -- shorter side of the box, in pixels
  face_size integer check (face_size >= 0),
  image_sha256 bytea not null check (octet_length(image_sha256) = 32),
  created_at timestamptz not null default now(),
  -- The same image enrolled twice for the same visitor and model is stored once. This index
  -- leads with visitor_id, so it also serves lookups by visitor and the cascade from
  -- visitors; a separate (visitor_id) index would only add write cost.
  constraint faces_visitor_image_key unique (visitor_id, model_id, image_sha256)
);

-- Index rebuilds read one model's faces in id order.
create index faces_model_id_id_idx on ${schema}.faces (model_id, id);

-- The durable, ordered feed that matcher replicas follow with "seq > last seen seq".
-- NOTE: rows are never pruned; a matcher that rebuilds from faces only needs the rows
-- after the maxChangeSeq it read before the rebuild.
create table ${schema}.face_changes (
  seq bigint generated always as identity primary key,
  op text not null check (op in ('add', 'delete')),
  face_id bigint not null,
  visitor_id uuid not null,
  model_id text not null,
  created_at timestamptz not null default now()
);

-- Records every insert and delete of a face, including deletes cascaded from visitors.
--
-- Identity values are drawn when a row is inserted, but transactions commit in another
-- order, so without care a reader that polls "seq > last" could see seq 8 commit, move
-- past it, and never see seq 7 that commits a moment later. To make seq order equal
-- commit order, the trigger takes one transaction-level advisory lock per schema before
-- it draws a seq. The lock is held until commit or rollback, so a transaction that writes
-- faces waits for every earlier face-writing transaction to finish, and its seqs are
-- larger than all seqs already committed. The cost is that transactions writing faces run
-- one at a time from their first face write to their commit; keep them short. A rolled
-- back transaction leaves a gap in seq, which readers must tolerate.
--
-- pg_notify is delivered at commit, in commit order, so LISTEN gives the same order.
-- TRUNCATE does not fire these row triggers; after truncating faces, rebuild the indexes.
create function ${schema}.record_face_change() returns trigger
language plpgsql as $function$
declare
  change_seq bigint;
begin
  perform pg_advisory_xact_lock(hashtextextended('facegate.face_changes:' || tg_table_schema, 0));

  if tg_op = 'INSERT' then
    insert into ${schema}.face_changes (op, face_id, visitor_id, model_id)
      values ('add', new.id, new.visitor_id, new.model_id)
      returning seq into change_seq;
  else
    insert into ${schema}.face_changes (op, face_id, visitor_id, model_id)
      values ('delete', old.id, old.visitor_id, old.model_id)
      returning seq into change_seq;
  end if;

  perform pg_notify(tg_table_schema || '_face_changes', change_seq::text);
  return null;
end
$function$;

create trigger faces_record_change
  after insert or delete on ${schema}.faces
  for each row execute function ${schema}.record_face_change();

-- An update would change an embedding without a feed entry, so matchers would drift.
create function ${schema}.reject_face_update() returns trigger
language plpgsql as $function$
begin
  raise exception 'faces are immutable: delete the face and insert a new one'
    using errcode = 'feature_not_supported';
end
$function$;

create trigger faces_reject_update
  before update on ${schema}.faces
  for each row execute function ${schema}.reject_face_update();
`,
};

const createBatchTables: Migration = {
  version: 2,
  name: 'create bulk extraction batches and their items',
  sql: (schema) => `
create table ${schema}.batches (
  id uuid primary key default gen_random_uuid(),
  status text not null default 'planning'
    check (status in ('planning', 'running', 'completed', 'cancelled', 'failed')),
  -- {type: 'directory' | 'manifest' | 'table', ...}; holds paths and identifiers, no secrets
  source jsonb not null check (jsonb_typeof(source) = 'object'),
  mode text not null check (mode in ('enrol', 'reextract')),
  multiple_faces text not null check (multiple_faces in ('skip', 'largest')),
  -- embedding model of the worker that planned the batch
  model_id text,
  -- source entries left out: non-image files of a directory source, table rows without an id
  ignored_entries integer not null default 0,
  -- {code, message} when planning failed for good
  error jsonb,
  created_at timestamptz not null default now(),
  planned_at timestamptz,
  finished_at timestamptz
);

create table ${schema}.batch_items (
  batch_id uuid not null
    constraint batch_items_batch_id_fkey references ${schema}.batches (id) on delete cascade,
  -- stable within a batch: the relative path, the manifest's externalId and image, or the row id
  item_key text not null,
  external_id text,
  name text,
  -- absolute file path, or the id column value of a table source
  locator text,
  status text not null default 'pending'
    check (status in ('pending', 'queued', 'done', 'no_face', 'multiple_faces', 'too_small', 'failed', 'skipped')),
  -- error code of a failed item; reason is the human-readable outcome
  code text,
  reason text,
  -- not a foreign key: a stored face may be deleted later without touching the report
  face_id bigint,
  faces_detected integer,
  -- processing attempts started (a retry or a worker crash adds one)
  attempts integer not null default 0,
  updated_at timestamptz not null default now(),
  primary key (batch_id, item_key)
);

-- Serves the per-status counts (index-only) and the status-filtered item pages.
create index batch_items_batch_status_key_idx on ${schema}.batch_items (batch_id, status, item_key);
`,
};

const createAccessTables: Migration = {
  version: 3,
  name: 'create api keys, the audit log and the match log; drop visitor ids from the feed',
  sql: (schema) => `
-- An API key is sent as 'fgk_<id>_<secret>'. Only the SHA-256 of the whole key is stored:
-- the secret is 32 random bytes, so a fast hash cannot be reversed by guessing.
create table ${schema}.api_keys (
  id text primary key check (id ~ '^[a-z0-9]{12}$'),
  name text not null check (length(name) between 1 and 200),
  key_sha256 bytea not null constraint api_keys_key_sha256_key unique
    check (octet_length(key_sha256) = 32),
  scopes text[] not null
    check (cardinality(scopes) > 0 and scopes <@ array['recognize', 'enrol', 'admin']),
  -- key id of the admin key that created this one, or 'cli'
  created_by text not null,
  created_at timestamptz not null default now(),
  -- keys are revoked, never deleted, so audit entries keep pointing at a known key
  revoked_at timestamptz
);

-- Every gateway listens on this channel and reloads its keys, so a revocation takes
-- effect everywhere within a round trip instead of at the next periodic reload.
create function ${schema}.notify_api_keys() returns trigger
language plpgsql as $function$
begin
  perform pg_notify(tg_table_schema || '_api_keys', '');
  return null;
end
$function$;

create trigger api_keys_notify
  after insert or update or delete or truncate on ${schema}.api_keys
  for each statement execute function ${schema}.notify_api_keys();

-- Who changed what and when. Targets are ids only, never names or images.
create table ${schema}.audit_log (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  -- null when the service runs without API keys
  key_id text,
  action text not null,
  target_type text not null,
  target_id text not null,
  request_id text,
  details jsonb not null default '{}' check (jsonb_typeof(details) = 'object')
);

create index audit_log_at_idx on ${schema}.audit_log (at);
create index audit_log_target_idx on ${schema}.audit_log (target_type, target_id);

-- Recognition results, written only when MATCH_LOG_RETENTION_DAYS is above 0 and pruned
-- after that many days. Deleting a visitor deletes its rows by cascade.
create table ${schema}.match_log (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  key_id text,
  request_id text,
  -- null for a face that matched no registered visitor
  visitor_id uuid
    constraint match_log_visitor_id_fkey references ${schema}.visitors (id) on delete cascade,
  face_id bigint,
  similarity real
);

create index match_log_at_idx on ${schema}.match_log (at);
create index match_log_visitor_id_idx on ${schema}.match_log (visitor_id) where visitor_id is not null;

-- The key that started a batch, recorded again in the audit entry of each face it enrols.
alter table ${schema}.batches add column created_by text;

-- Erasing a visitor also redacts the batch items that named it or stored its faces.
create index batch_items_face_id_idx on ${schema}.batch_items (face_id) where face_id is not null;
create index batch_items_external_id_idx on ${schema}.batch_items (external_id)
  where external_id is not null;

-- Matchers take the visitor of an added face from faces, so the feed keeps no link from
-- a deleted face to its visitor.
alter table ${schema}.face_changes drop column visitor_id;

create or replace function ${schema}.record_face_change() returns trigger
language plpgsql as $function$
declare
  change_seq bigint;
begin
  perform pg_advisory_xact_lock(hashtextextended('facegate.face_changes:' || tg_table_schema, 0));

  if tg_op = 'INSERT' then
    insert into ${schema}.face_changes (op, face_id, model_id)
      values ('add', new.id, new.model_id)
      returning seq into change_seq;
  else
    insert into ${schema}.face_changes (op, face_id, model_id)
      values ('delete', old.id, old.model_id)
      returning seq into change_seq;
  end if;

  perform pg_notify(tg_table_schema || '_face_changes', change_seq::text);
  return null;
end
$function$;
`,
};

const createInstanceId: Migration = {
  version: 4,
  name: 'create the instance id that saved indexes are tied to',
  sql: (schema) => `
-- One random id per schema. A matcher records it in its saved index and rebuilds when
-- it differs, so an index folder shared by mistake between two databases or schemas
-- never serves one deployment's faces in another.
create table ${schema}.instance (
  id uuid primary key default gen_random_uuid(),
  created_at timestamptz not null default now()
);
insert into ${schema}.instance default values;
`,
};

const notifyVisitorChanges: Migration = {
  version: 5,
  name: 'notify visitor updates and deletions',
  sql: (schema) => `
-- Matchers cache visitor names for recognition results and drop an entry when this
-- notification names it (the payload is the visitor id), or every entry on an empty payload.
create function ${schema}.notify_visitor_change() returns trigger
language plpgsql as $function$
begin
  if tg_level = 'ROW' then
    perform pg_notify(tg_table_schema || '_visitors', old.id::text);
  else
    perform pg_notify(tg_table_schema || '_visitors', '');
  end if;
  return null;
end
$function$;

create trigger visitors_notify_change
  after update or delete on ${schema}.visitors
  for each row execute function ${schema}.notify_visitor_change();

create trigger visitors_notify_truncate
  after truncate on ${schema}.visitors
  for each statement execute function ${schema}.notify_visitor_change();
`,
};

const indexBatchesByAge: Migration = {
  version: 6,
  name: 'index batches by creation time for the batch list',
  sql: (schema) => `
create index batches_created_at_id on ${schema}.batches (created_at, id);
`,
};

const recordIgnoredEntries: Migration = {
  version: 7,
  name: 'record the entries a batch source leaves out as ignored items',
  sql: (schema) => `
alter table ${schema}.batch_items drop constraint batch_items_status_check;
alter table ${schema}.batch_items add constraint batch_items_status_check check (status in
  ('pending', 'queued', 'done', 'no_face', 'multiple_faces', 'too_small', 'failed', 'skipped',
   'ignored'));
`,
};

const chooseCentreFace: Migration = {
  version: 8,
  name: 'let a batch take the face nearest the image centre',
  sql: (schema) => `
alter table ${schema}.batches drop constraint batches_multiple_faces_check;
alter table ${schema}.batches add constraint batches_multiple_faces_check
  check (multiple_faces in ('skip', 'largest', 'centre'));
`,
};

/** Every migration, in order. Append new ones; never edit one that has been released. */
export const MIGRATIONS: readonly Migration[] = [
  createTables,
  createBatchTables,
  createAccessTables,
  createInstanceId,
  notifyVisitorChanges,
  indexBatchesByAge,
  recordIgnoredEntries,
  chooseCentreFace,
];

export interface MigrationResult {
  /** Versions applied by this call, in order; empty when the schema was already current. */
  applied: number[];
  /** Highest version now applied. */
  version: number;
}

/**
 * Creates the schema if needed and applies every pending migration in one transaction.
 * A transaction-level advisory lock keyed by the schema name makes concurrent callers
 * (several processes starting at once) wait for each other, so each migration runs once.
 */
export async function migrate(
  db: Database,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<MigrationResult> {
  const schema = quoteIdentifier(db.schema);
  const latest = Math.max(0, ...migrations.map((migration) => migration.version));

  // A current schema needs no lock and no DDL, so a role without CREATE rights can start.
  const current = await schemaVersion(db);
  if (current >= latest) return { applied: [], version: current };

  return withDatabaseErrors(db, () =>
    db.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtextextended(${'facegate.migrate:' + db.schema}, 0))`;
      await tx`create schema if not exists ${tx(db.schema)}`;
      await tx`
        create table if not exists ${tx(db.schema)}.schema_migrations (
          version integer primary key,
          name text not null,
          applied_at timestamptz not null default now()
        )`;

      const rows = await tx<{ version: number }[]>`
        select version from ${tx(db.schema)}.schema_migrations`;
      const done = new Set(rows.map((row) => row.version));

      const applied: number[] = [];
      for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
        if (done.has(migration.version)) continue;
        await tx.unsafe(migration.sql(schema));
        await tx`
          insert into ${tx(db.schema)}.schema_migrations (version, name)
          values (${migration.version}, ${migration.name})`;
        applied.push(migration.version);
        done.add(migration.version);
      }

      return { applied, version: Math.max(0, ...done) };
    }),
  ).catch((error: unknown) => {
    if (describePostgresError(error)?.sqlState === '42501') {
      throw new FaceGateError(
        'CONFIG_INVALID',
        `the database schema ${db.schema} is at version ${current} and needs migration to ${latest}, ` +
          `but this database role may not change it; run 'fr db migrate' with the schema owner's URL, ` +
          `or set DATABASE_MIGRATION_URL`,
        { cause: error, details: { schema: db.schema, version: current, required: latest } },
      );
    }
    throw error;
  });
}

/** Returns the random id of this schema's data, created by the migrations. */
export async function getInstanceId(db: Database): Promise<string> {
  const rows = await withDatabaseErrors(
    db,
    () => db.sql<{ id: string }[]>`
      select id from ${db.sql(db.schema)}.instance order by created_at limit 1`,
  );
  if (!rows[0]) {
    throw new FaceGateError(
      'INTERNAL',
      `schema ${db.schema} has no instance id; run the migrations`,
    );
  }
  return rows[0].id;
}

/** Returns the highest applied migration version, or 0 when the schema has none. */
export async function schemaVersion(db: Database): Promise<number> {
  const rows = await withDatabaseErrors(
    db,
    () => db.sql<{ version: number | null }[]>`
      select case when to_regclass(${quoteIdentifier(db.schema) + '.schema_migrations'}) is null
        then null else 0 end as version`,
  );
  if (rows[0]?.version === null) return 0;
  const versions = await withDatabaseErrors(
    db,
    () => db.sql<{ version: number | null }[]>`
      select max(version) as version from ${db.sql(db.schema)}.schema_migrations`,
  );
  return versions[0]?.version ?? 0;
}

/**
 * Grants a database role what the service needs and nothing more: it can read and write
 * visitors, faces and batches, append to the feed and the audit log, and revoke keys.
 * It cannot create, alter or drop tables, truncate them, or change audit entries.
 * Run by the schema owner after migrating; safe to run again.
 */
export async function grantServiceAccess(db: Database, role: string): Promise<void> {
  const { sql } = db;
  const schema = sql(db.schema);
  const grantee = sql(role);

  await withDatabaseErrors(db, () =>
    sql.begin(async (tx) => {
      // Concurrent GRANTs on one object can fail with "tuple concurrently updated", and
      // every process grants at start, so they take the migration lock in turn.
      await tx`select pg_advisory_xact_lock(hashtextextended(${'facegate.migrate:' + db.schema}, 0))`;
      await tx`grant usage on schema ${schema} to ${grantee}`;
      await tx`grant select, insert, update, delete on
        ${schema}.visitors, ${schema}.faces, ${schema}.batches, ${schema}.batch_items,
        ${schema}.match_log
        to ${grantee}`;
      await tx`grant select, insert on ${schema}.face_changes, ${schema}.audit_log to ${grantee}`;
      await tx`grant select, insert, update on ${schema}.api_keys to ${grantee}`;
      await tx`grant select on ${schema}.schema_migrations, ${schema}.instance to ${grantee}`;
      await tx`grant usage, select on all sequences in schema ${schema} to ${grantee}`;
    }),
  );
}

/** Settings of `openServiceDatabase`. */
export interface ServiceDatabaseOptions {
  /** URL the process works with; its role needs only the rights of grantServiceAccess. */
  url: string;
  /** URL of the schema owner, used to migrate and grant; when unset, `url` migrates. */
  migrationUrl?: string | undefined;
  schema: string;
  maxConnections?: number;
}

/**
 * Opens the database a service process works with. With a migration URL, the owner
 * role migrates the schema and grants the service role (the user of `url`) its rights,
 * then that connection is closed. Without one, `url` migrates, which fails with
 * CONFIG_INVALID if its role may not change a schema that needs migrating.
 */
export async function openServiceDatabase(options: ServiceDatabaseOptions): Promise<Database> {
  if (options.migrationUrl) {
    const owner = createDatabase({
      url: options.migrationUrl,
      schema: options.schema,
      maxConnections: 1,
    });
    try {
      await migrate(owner);
      const role = roleOf(options.url);
      if (role !== null && role !== roleOf(options.migrationUrl))
        await grantServiceAccess(owner, role);
    } finally {
      await owner.close();
    }
  }

  const db = createDatabase({
    url: options.url,
    schema: options.schema,
    ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
  });
  await migrate(db);
  return db;
}

/** Returns the user name of a connection URL, or null when the URL names none. */
function roleOf(url: string): string | null {
  try {
    const name = decodeURIComponent(new URL(url).username);
    return name === '' ? null : name;
  } catch {
    return null;
  }
}
