import type { Database } from './database.js';
import { decodeEmbedding } from './embedding.js';
import { withDatabaseErrors } from './errors.js';
import { isUuid } from './ids.js';

/** Reads every stored embedding of one visitor made by `modelId` (for 1:1 verification). */
export async function listVisitorEmbeddings(
  db: Database,
  visitorId: string,
  modelId: string,
): Promise<Float32Array[]> {
  if (!isUuid(visitorId)) return [];
  const { sql } = db;
  const rows = await withDatabaseErrors(
    db,
    () => sql<{ dim: number; embedding: Buffer }[]>`
      select dim, embedding from ${sql(db.schema)}.faces
      where visitor_id = ${visitorId} and model_id = ${modelId}
      order by id`,
  );
  return rows.map((row) => decodeEmbedding(row.embedding, row.dim));
}
