/**
 * PostgreSQL layer of facegate: the source of truth for visitors and their face
 * embeddings, and the ordered change feed that matcher replicas follow to keep their
 * HNSW indexes current.
 */
export {
  CHANGE_CHANNEL_SUFFIX,
  DEFAULT_PING_TIMEOUT_MS,
  createDatabase,
  ping,
  quoteIdentifier,
  transaction,
  validateSchemaName,
} from './database.js';
export type { Database, DatabaseOptions, Sql } from './database.js';

export { isDatabaseUnavailable, toDatabaseError, withDatabaseErrors } from './errors.js';

export { MIGRATIONS, migrate } from './migrations.js';
export type { Migration, MigrationResult } from './migrations.js';

export {
  BYTES_PER_VALUE,
  MAX_EMBEDDING_DIM,
  decodeEmbedding,
  encodeEmbedding,
} from './embedding.js';

export { isUuid } from './ids.js';

export {
  MAX_VISITOR_PAGE_SIZE,
  createVisitor,
  deleteVisitor,
  getVisitor,
  getVisitorsByIds,
  listVisitors,
  updateVisitor,
} from './visitors.js';
export type {
  ListVisitorsOptions,
  NewVisitor,
  Visitor,
  VisitorMetadata,
  VisitorPage,
  VisitorPatch,
} from './visitors.js';

export {
  DEFAULT_EMBEDDING_BATCH_SIZE,
  countFacesByModel,
  deleteFace,
  getEmbedding,
  insertFace,
  listFaces,
  streamEmbeddings,
} from './faces.js';
export type {
  Face,
  FaceBox,
  FaceEmbedding,
  InsertFaceResult,
  NewFace,
  StoredEmbedding,
} from './faces.js';

export {
  MAX_CHANGES_PER_READ,
  changeChannel,
  listenForChanges,
  maxChangeSeq,
  readChanges,
} from './feed.js';
export type { FaceChange, ListenOptions, Unlisten } from './feed.js';
export { listVisitorEmbeddings } from './visitor-embeddings.js';

export {
  MAX_BATCH_ITEM_PAGE_SIZE,
  cancelBatch,
  checkTableSource,
  claimBatchItem,
  completeBatchIfFinished,
  countBatchItems,
  createBatch,
  failBatch,
  findOrCreateVisitor,
  findVisitorIdByExternalId,
  getBatch,
  listBatchItems,
  listFacesByImage,
  listUnfinishedBatchIds,
  markBatchPlanned,
  markItemsQueued,
  parseColumnName,
  parseTableName,
  readTableImage,
  recordItemOutcome,
  resolveTableSource,
  startBatchPlanning,
  storeItemFace,
  streamTableSourceRows,
  upsertBatchItems,
} from './batches.js';
export type {
  Batch,
  BatchCounts,
  BatchItem,
  BatchItemPage,
  BatchItemStatus,
  BatchMode,
  BatchSource,
  BatchStatus,
  ClaimedBatchItem,
  ImageFace,
  ItemOutcome,
  ListBatchItemsOptions,
  MultipleFacesPolicy,
  NewBatch,
  NewBatchItem,
  ResolvedTableSource,
  StoredItemFace,
  TableImageEncoding,
  TableSource,
  TableSourceRow,
} from './batches.js';
