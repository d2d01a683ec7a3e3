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

export {
  MIGRATIONS,
  getInstanceId,
  grantServiceAccess,
  migrate,
  openServiceDatabase,
  schemaVersion,
} from './migrations.js';
export type { Migration, MigrationResult, ServiceDatabaseOptions } from './migrations.js';

export { MAX_AUDIT_PAGE_SIZE, listAudit, recordAudit } from './audit.js';
export type {
  Actor,
  AuditAction,
  AuditEntry,
  AuditRecord,
  AuditTargetType,
  ListAuditOptions,
} from './audit.js';

export {
  insertApiKey,
  listApiKeys,
  listenForKeyChanges,
  loadActiveApiKeys,
  revokeApiKey,
} from './api-keys.js';
export type {
  ActiveApiKey,
  ApiKeyRecord,
  ApiKeyScope,
  NewApiKey,
  RevokeOptions,
} from './api-keys.js';

export { pruneMatchLog, recordMatches } from './match-log.js';
export type { MatchLogEntry } from './match-log.js';

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
  eraseVisitor,
  getVisitor,
  getVisitorsByIds,
  listVisitors,
  listenForVisitorChanges,
  updateVisitor,
} from './visitors.js';
export type {
  Erasure,
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
  eraseFace,
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
  MAX_BATCH_PAGE_SIZE,
  cancelBatch,
  checkTableSource,
  claimBatchItem,
  claimBatchItems,
  completeBatchIfFinished,
  countBatchItems,
  createBatch,
  failBatch,
  findOrCreateVisitor,
  findOrCreateVisitors,
  findVisitorImageFaces,
  findVisitorsImageFaces,
  renameBatchItemsExternalId,
  findVisitorIdByExternalId,
  getBatch,
  listBatchItems,
  listBatches,
  listFacesByImage,
  listUnfinishedBatchIds,
  markBatchPlanned,
  markItemsQueued,
  parseColumnName,
  parseTableName,
  readTableImage,
  recordItemOutcome,
  recordItemOutcomes,
  resolveTableSource,
  startBatchPlanning,
  storeItemFace,
  storeItemFaces,
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
  BatchPage,
  BatchSource,
  BatchStatus,
  ClaimedBatchItem,
  ImageFace,
  ItemFaceEntry,
  ItemOutcome,
  ListBatchItemsOptions,
  ListBatchesOptions,
  MultipleFacesPolicy,
  NewBatch,
  NewBatchOptions,
  NewBatchItem,
  ResolvedTableSource,
  StoreItemFaceOptions,
  StoredItemFace,
  TableImageEncoding,
  TableSource,
  TableSourceRow,
} from './batches.js';
