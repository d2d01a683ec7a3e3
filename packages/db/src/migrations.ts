/**
 * Schema migrations, applied in version order by `migrate`. PostgreSQL is the source of
 * truth for visitors and faces; each matcher's HNSW index is derived from `faces` and kept
 * current through the `face_changes` feed.
 */
import type { Database } from './database.js';
import { quoteIdentifier } from './database.js';
import { withDatabaseErrors } from './errors.js';

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

/** Every migration, in order. Append new ones; never edit one that has been released. */
export const MIGRATIONS: readonly Migration[] = [createTables, createBatchTables];

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
  );
}
