// Reads a whole schema as text, so tests can check that a value (a name, a hash, an
// embedding in hex) is stored somewhere before an erasure and nowhere after it.
import type { Database } from '@facegate/db';

/** Returns every row of every table of the database's schema as JSON text, by table; bytea is hex. */
export async function dumpSchema(db: Database): Promise<Map<string, string>> {
  const tables = await db.sql<{ table_name: string }[]>`
    select table_name from information_schema.tables where table_schema = ${db.schema}`;
  const dump = new Map<string, string>();
  for (const { table_name: table } of tables) {
    const rows = await db.sql<{ row: string }[]>`
      select row_to_json(t)::text as row from ${db.sql(db.schema)}.${db.sql(table)} t`;
    dump.set(table, rows.map((row) => row.row).join('\n'));
  }
  return dump;
}
