export { FaceIndex, DEFAULT_FACE_INDEX_OPTIONS, VISITOR_SCORINGS } from './face-index.js';
export type {
  FaceCandidate,
  FaceEntry,
  FaceIndexOptions,
  FaceIndexStats,
  LoadExpectation,
  LoadOptions,
  SearchOptions,
  VisitorScoring,
} from './face-index.js';
export { exactTopK } from './exact.js';
export { hnswlibBuild } from './hnswlib.js';
export type { HnswlibBuild } from './hnswlib.js';
export type { ExactTopK } from './exact.js';
export type { SaveResult } from './persistence.js';
export { MAX_FACE_ID } from './validation.js';
