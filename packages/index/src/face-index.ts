/**
 * The in-memory face index of the matcher process: an HNSW graph (hnswlib-node)
 * over every live face feature, a contiguous copy of the same vectors for exact
 * search on small galleries, and the face -> visitor mapping. The database stays
 * the source of truth; this index is derived from it and persisted only to start fast.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';

import { FaceGateError } from '@facegate/errors';
import type { HierarchicalNSW } from 'hnswlib-node';

import { exactTopK } from './exact.js';
import { checkGraphFile } from './graph-file.js';
import { type HnswlibBuild, hnswlib, hnswlibBuild } from './hnswlib.js';
import {
  FORMAT_VERSION,
  commitGeneration,
  errorMessage,
  indexFileName,
  prepareDirectory,
  readPersistedState,
  temporaryName,
  verifyFileDigest,
} from './persistence.js';
import type { PersistedMetadata, SaveResult } from './persistence.js';
import { assertFaceId, assertIntegerInRange, assertVisitorId, toUnitVector } from './validation.js';
import { LiveVectorStore } from './vector-store.js';

/** Options of a FaceIndex. Only `modelId` is required. */
export interface FaceIndexOptions {
  /** Model that produced every vector of this index; save and load compare it. */
  modelId: string;
  /** Dimensions of a face feature. Default 128. */
  dim?: number;
  /** HNSW links per node (2M on the base layer); more links raise recall and memory. Default 16. */
  M?: number;
  /** Candidate list size while inserting; higher builds a better graph, more slowly. Default 200. */
  efConstruction?: number;
  /** Candidate list size while searching (search breadth); hnswlib uses max(ef, faces requested). Default 200. */
  ef?: number;
  /** Faces the graph has room for before its first resize; it doubles when full. Default 1024. */
  initialCapacity?: number;
  /** At or below this many live faces, search is exact brute force instead of HNSW. Default 20000. */
  exactSearchMaxFaces?: number;
  /** Identity of the database the faces come from; save records it and load compares it. */
  datasetId?: string;
}

export const DEFAULT_FACE_INDEX_OPTIONS = {
  dim: 128,
  // M 32 with ef 200 kept 99.5% recall@1 against exact search with 100,000
  // embedding-shaped distractors, where M 16 fell to 95.4% (`npm run bench:ann`).
  M: 32,
  efConstruction: 200,
  ef: 200,
  initialCapacity: 1024,
  // Exact search costs about 114 ns per face on one core (bench:ann), so up to
  // this size it stays near 1 ms and needs no approximation.
  exactSearchMaxFaces: 8_000,
} as const;

/** One stored face feature, as a rebuild from the database streams it. */
export interface FaceEntry {
  /** Database id of the face (the HNSW label), an integer from 0 to 2^32 - 1. */
  faceId: number;
  visitorId: string;
  vector: ArrayLike<number>;
}

/**
 * The score of a visitor with several faces. `best`: the similarity of their most similar
 * face. `fused`: the similarity to their template, the normalised mean of their faces.
 * Fused accepted fewer strangers at a higher identification rate (`npm run bench:identify`).
 * With one face per visitor both give the same result.
 */
export type VisitorScoring = 'best' | 'fused';

export const VISITOR_SCORINGS: readonly VisitorScoring[] = ['best', 'fused'];

export interface SearchOptions {
  /** Distinct visitors to return at most. Default 1. */
  k?: number;
  /** Search breadth for this call only; defaults to the index's `ef`. Ignored by exact search. */
  ef?: number;
  /** Default 'best'. */
  scoring?: VisitorScoring;
}

/** One visitor found by a search, with the face of theirs nearest to the query. */
export interface FaceCandidate {
  visitorId: string;
  faceId: number;
  /**
   * Cosine similarity in [-1, 1] between the query and this face ('best' scoring) or
   * the visitor's template ('fused' scoring).
   */
  similarity: number;
}

export interface FaceIndexStats {
  /** Live (searchable) faces. */
  size: number;
  /** Visitors with at least one live face. */
  visitors: number;
  /** Elements the graph has room for before its next resize. */
  capacity: number;
  /** Deleted faces whose graph slots the next insertions will reuse. */
  deletedCount: number;
  M: number;
  efConstruction: number;
  ef: number;
  modelId: string;
  dim: number;
  /** ISO 8601 time of the state last saved or loaded, or null if never saved. */
  lastPersistedAt: string | null;
  /** Sequence number of the last change-feed row applied; 0 until the caller sets one. */
  lastSeq: number;
  /** Build of the hnswlib addon in use: 'avx2' (faster distances) or 'portable'. */
  hnswlibBuild: HnswlibBuild;
}

export interface LoadExpectation {
  modelId: string;
  dim: number;
  /** When set, a saved index of another dataset (or of none) is not used. */
  datasetId?: string;
}

/** Runtime options of a loaded index; M, efConstruction and dim come from the saved index. */
export interface LoadOptions {
  ef?: number;
  exactSearchMaxFaces?: number;
  /** Called with the reason when a saved index exists but cannot be used, before load returns null. */
  onRebuildNeeded?: (reason: string) => void;
}

interface ScoredFace {
  faceId: number;
  similarity: number;
}

type Settings = Required<Omit<FaceIndexOptions, 'datasetId'>>;

/** Each search pass requests this many times the faces of the previous pass (the first pass: k times). */
const OVERSAMPLE_FACTOR = 4;
/**
 * Minimum number of faces a fused search requests. The visitor with the nearest template
 * usually has one of the nearest faces, but not always the nearest one, so a few more are
 * scored. On LFW, 8, 32 and every face gave the same identifications.
 */
const FUSED_MIN_FACES = 8;

export class FaceIndex {
  private readonly settings: Settings;
  private readonly datasetId: string | undefined;
  private readonly graph: HierarchicalNSW;
  private readonly vectors: LiveVectorStore;
  private readonly visitorByFace = new Map<number, string>();
  private readonly facesByVisitor = new Map<string, Set<number>>();
  /** Sum of a visitor's faces while their template is scored. */
  private readonly templateScratch: Float32Array;
  /**
   * Labels marked deleted that may still be in the graph. hnswlib reuses deleted
   * slots for new labels without saying which, so some of these may be gone.
   */
  private readonly possiblyDeletedLabels = new Set<number>();
  private lastSeqValue = 0;
  private lastPersistedAtValue: string | null = null;
  private generation = 0;
  private saveQueue: Promise<unknown> = Promise.resolve();

  /** Creates an empty index. Throws FaceGateError CONFIG_INVALID on an invalid option. */
  constructor(options: FaceIndexOptions) {
    this.settings = resolveOptions(options);
    this.datasetId = options.datasetId;
    this.graph = new hnswlib.HierarchicalNSW('ip', this.settings.dim);
    // allowReplaceDeleted lets new faces take over the slots of deleted ones, so churn
    // reuses memory, and a deleted node stays in the graph only until a new face replaces it.
    this.graph.initIndex({
      maxElements: this.settings.initialCapacity,
      m: this.settings.M,
      efConstruction: this.settings.efConstruction,
      allowReplaceDeleted: true,
    });
    this.graph.setEf(this.settings.ef);
    this.vectors = new LiveVectorStore(this.settings.dim, this.settings.initialCapacity);
    this.templateScratch = new Float32Array(this.settings.dim);
  }

  /** Builds an index from a stream of stored faces, such as a database cursor. */
  static async build(
    options: FaceIndexOptions,
    entries: Iterable<FaceEntry> | AsyncIterable<FaceEntry>,
  ): Promise<FaceIndex> {
    const index = new FaceIndex(options);
    for await (const entry of entries) index.add(entry.faceId, entry.visitorId, entry.vector);
    return index;
  }

  /**
   * Loads the index saved in `dir`.
   *
   * Returns null when `dir` contains no saved index, and also when the saved index is
   * unusable (truncated, corrupt, unsupported format): then `onRebuildNeeded`
   * receives the reason and the caller should rebuild from the database.
   * Throws FaceGateError MODEL_MISMATCH when the index was built from another model or
   * dimension, and CONFIG_INVALID on an invalid option.
   */
  static async load(
    dir: string,
    expected: LoadExpectation,
    options: LoadOptions = {},
  ): Promise<FaceIndex | null> {
    const rebuildNeeded = (reason: string): null => {
      options.onRebuildNeeded?.(reason);
      return null;
    };

    const state = await readPersistedState(dir);
    if (state.kind === 'missing') return null;
    if (state.kind === 'corrupt') return rebuildNeeded(state.reason);
    const { metadata } = state;

    if (metadata.modelId !== expected.modelId || metadata.dim !== expected.dim) {
      throw new FaceGateError(
        'MODEL_MISMATCH',
        `the face index in ${dir} was built from model '${metadata.modelId}' (${metadata.dim} dimensions), ` +
          `but the current model is '${expected.modelId}' (${expected.dim} dimensions); ` +
          `re-extract the stored face features with '${expected.modelId}', then delete ${dir} so the index is rebuilt`,
        {
          details: { persistedModelId: metadata.modelId, persistedDim: metadata.dim, ...expected },
        },
      );
    }

    if (expected.datasetId !== undefined && metadata.datasetId !== expected.datasetId) {
      return rebuildNeeded(
        `the index in ${dir} was saved from another database or schema (dataset ${metadata.datasetId ?? 'not recorded'}, expected ${expected.datasetId})`,
      );
    }

    const digestProblem = await verifyFileDigest(state.index.path, state.index);
    if (digestProblem) return rebuildNeeded(digestProblem);

    const index = new FaceIndex({
      modelId: metadata.modelId,
      dim: metadata.dim,
      M: metadata.M,
      efConstruction: metadata.efConstruction,
      ef: options.ef ?? DEFAULT_FACE_INDEX_OPTIONS.ef,
      exactSearchMaxFaces:
        options.exactSearchMaxFaces ?? DEFAULT_FACE_INDEX_OPTIONS.exactSearchMaxFaces,
      initialCapacity: 1,
      ...(metadata.datasetId !== undefined && { datasetId: metadata.datasetId }),
    });
    try {
      // readIndex replaces the empty graph; allowReplaceDeleted must be passed again
      // because the flag is not stored in the file.
      await index.graph.readIndex(state.index.path, true);
    } catch (error) {
      return rebuildNeeded(
        `graph file ${state.index.path} could not be read: ${errorMessage(error)}`,
      );
    }

    const problem = index.restoreFromMetadata(metadata);
    if (problem) return rebuildNeeded(`${dir} is inconsistent: ${problem}`);
    return index;
  }

  /**
   * Adds a face, or updates it when `faceId` is already live.
   *
   * Re-adding a live face with the same vector and visitor changes nothing; a new
   * vector replaces the old one. Re-adding a removed face revives it with the new
   * vector. Throws FaceGateError INVALID_REQUEST on an invalid id or vector.
   */
  add(faceId: number, visitorId: string, vector: ArrayLike<number>): void {
    assertFaceId(faceId);
    assertVisitorId(visitorId);
    const unit = toUnitVector(vector, this.settings.dim, `vector of face ${faceId}`);

    const stored = this.vectors.get(faceId);
    if (stored === undefined) {
      this.insertIntoGraph(faceId, unit);
      this.vectors.set(faceId, unit);
    } else if (!sameVector(stored, unit)) {
      // addPoint on a live label updates its vector and repairs its links in place.
      this.graph.addPoint(Array.from(unit), faceId);
      this.vectors.set(faceId, unit);
    }
    this.assignVisitor(faceId, visitorId);
  }

  /**
   * Removes a face from search results and erases its vector: hnswlib keeps a deleted
   * node's data in memory and in saved files, so the vector is first overwritten with one
   * derived from the face id alone. Returns false when the face is not in the index.
   */
  remove(faceId: number): boolean {
    assertFaceId(faceId);
    if (!this.vectors.has(faceId)) return false;

    // addPoint on a live label replaces its vector in place and relinks it.
    this.graph.addPoint(erasedVector(faceId, this.settings.dim), faceId);
    this.graph.markDelete(faceId);
    this.possiblyDeletedLabels.add(faceId);
    this.vectors.delete(faceId);
    this.unassignVisitor(faceId);
    return true;
  }

  /** Removes every face of a visitor and returns how many were removed. */
  removeVisitor(visitorId: string): number {
    assertVisitorId(visitorId);
    const faceIds = [...(this.facesByVisitor.get(visitorId) ?? [])];
    for (const faceId of faceIds) this.remove(faceId);
    return faceIds.length;
  }

  has(faceId: number): boolean {
    return this.vectors.has(faceId);
  }

  /**
   * Finds up to `k` distinct visitors closest to `vector`, best first, each with its best face.
   *
   * Several faces of one visitor can fill the nearest neighbours, so each pass requests
   * more faces than visitors, growing until k visitors or all live faces are seen.
   * Returns [] on an empty index. Throws FaceGateError INVALID_REQUEST on an invalid query or option.
   */
  search(vector: ArrayLike<number>, options: SearchOptions = {}): FaceCandidate[] {
    const k = options.k ?? 1;
    assertIntegerInRange('INVALID_REQUEST', 'k', k, 1);
    if (options.ef !== undefined) assertIntegerInRange('INVALID_REQUEST', 'ef', options.ef, 1);
    const scoring = options.scoring ?? 'best';
    if (!VISITOR_SCORINGS.includes(scoring)) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `scoring must be one of ${VISITOR_SCORINGS.join(', ')}, got ${String(scoring)}`,
      );
    }
    const query = toUnitVector(vector, this.settings.dim, 'query vector');

    const liveCount = this.vectors.count;
    if (liveCount === 0) return [];
    const maxVisitors = Math.min(k, this.facesByVisitor.size);
    const exact = liveCount <= this.settings.exactSearchMaxFaces;
    const rank = (neighbours: ScoredFace[]): FaceCandidate[] =>
      scoring === 'fused'
        ? this.bestTemplates(query, neighbours, maxVisitors)
        : this.bestFacePerVisitor(neighbours, maxVisitors);

    const firstPass = maxVisitors * OVERSAMPLE_FACTOR;
    let faceCount = Math.min(
      liveCount,
      scoring === 'fused' ? Math.max(firstPass, FUSED_MIN_FACES) : firstPass,
    );
    for (;;) {
      const neighbours = exact
        ? this.exactNeighbours(query, faceCount)
        : this.graphNeighbours(query, faceCount, options.ef);
      const candidates = rank(neighbours);
      if (candidates.length >= maxVisitors) return candidates;

      // With deletions the graph can fail to reach every live node; the exact scan cannot.
      if (neighbours.length < faceCount) {
        return rank(this.exactNeighbours(query, liveCount));
      }
      if (faceCount >= liveCount) return candidates;
      faceCount = Math.min(liveCount, faceCount * OVERSAMPLE_FACTOR);
    }
  }

  /** Records the sequence number of the last change-feed row applied; save persists it. */
  setLastSeq(seq: number): void {
    assertIntegerInRange('INVALID_REQUEST', 'lastSeq', seq, 0);
    this.lastSeqValue = seq;
  }

  get lastSeq(): number {
    return this.lastSeqValue;
  }

  stats(): FaceIndexStats {
    return {
      size: this.vectors.count,
      visitors: this.facesByVisitor.size,
      capacity: this.graph.getMaxElements(),
      deletedCount: this.deletedSlotCount(),
      M: this.settings.M,
      efConstruction: this.settings.efConstruction,
      ef: this.settings.ef,
      modelId: this.settings.modelId,
      dim: this.settings.dim,
      lastPersistedAt: this.lastPersistedAtValue,
      lastSeq: this.lastSeqValue,
      hnswlibBuild,
    };
  }

  /**
   * Saves the index into `dir` as a new generation and deletes older ones.
   *
   * A crash at any point leaves the last complete generation loadable. Concurrent
   * calls run one after another. Two processes must not save into the same directory.
   * Throws FaceGateError INTERNAL when a write fails.
   */
  save(dir: string): Promise<SaveResult> {
    const run = this.saveQueue.then(() => this.saveGeneration(dir));
    this.saveQueue = run.catch(() => undefined);
    return run;
  }

  private async saveGeneration(dir: string): Promise<SaveResult> {
    let indexTemporaryPath: string | undefined;
    try {
      const generation = await prepareDirectory(dir, this.generation);

      // No await between the snapshot and the graph write: both must describe the same state.
      const savedAt = new Date().toISOString();
      const metadata = this.snapshotMetadata(generation, savedAt);
      const graphCount = this.graph.getCurrentCount();
      indexTemporaryPath = join(dir, temporaryName(indexFileName(generation)));
      this.graph.writeIndexSync(indexTemporaryPath);

      const layoutProblem = await checkGraphFile(indexTemporaryPath, {
        count: graphCount,
        dim: this.settings.dim,
        M: this.settings.M,
      });
      if (layoutProblem) throw new Error(layoutProblem);

      const result = await commitGeneration(dir, indexTemporaryPath, metadata);
      this.generation = generation;
      this.lastPersistedAtValue = savedAt;
      return result;
    } catch (error) {
      if (indexTemporaryPath) await rm(indexTemporaryPath, { force: true }).catch(() => undefined);
      throw new FaceGateError(
        'INTERNAL',
        `saving the face index to ${dir} failed: ${errorMessage(error)}; the last complete save is still loadable`,
        { cause: error },
      );
    }
  }

  private snapshotMetadata(generation: number, savedAt: string): PersistedMetadata {
    const faces: Array<[number, string]> = [];
    for (const [faceId, visitorId] of this.visitorByFace) faces.push([faceId, visitorId]);
    // The graph lists exactly the labels it still contains, while possiblyDeletedLabels may list reused ones.
    const deletedFaceIds = this.graph.getIdsList().filter((label) => !this.vectors.has(label));

    return {
      formatVersion: FORMAT_VERSION,
      generation,
      savedAt,
      modelId: this.settings.modelId,
      ...(this.datasetId !== undefined && { datasetId: this.datasetId }),
      dim: this.settings.dim,
      M: this.settings.M,
      efConstruction: this.settings.efConstruction,
      lastSeq: this.lastSeqValue,
      counts: {
        faces: faces.length,
        visitors: this.facesByVisitor.size,
        deleted: deletedFaceIds.length,
        capacity: this.graph.getMaxElements(),
      },
      faces,
      deletedFaceIds,
    };
  }

  /** Fills the maps and vectors of a freshly read graph; returns a problem or null. */
  private restoreFromMetadata(metadata: PersistedMetadata): string | null {
    const graphLabels = new Set(this.graph.getIdsList());
    const expectedLabels = metadata.faces.length + metadata.deletedFaceIds.length;
    if (graphLabels.size !== expectedLabels || this.graph.getCurrentCount() !== expectedLabels) {
      return `the graph holds ${graphLabels.size} labels, but the metadata lists ${expectedLabels} faces`;
    }
    // hnswlib 0.8.0 loads a graph without elements at capacity 0, ignoring the capacity saved in the file.
    if (this.graph.getMaxElements() < metadata.counts.capacity)
      this.graph.resizeIndex(metadata.counts.capacity);
    if (this.graph.getMaxElements() !== metadata.counts.capacity) {
      return `the graph has capacity ${this.graph.getMaxElements()}, but the metadata records ${metadata.counts.capacity}`;
    }

    for (const [faceId, visitorId] of metadata.faces) {
      if (!graphLabels.has(faceId)) return `face ${faceId} is missing from the graph`;
      let point: number[];
      try {
        point = this.graph.getPoint(faceId);
      } catch (error) {
        return `face ${faceId} is not live in the graph: ${errorMessage(error)}`;
      }
      if (point.length !== this.settings.dim)
        return `face ${faceId} has ${point.length} dimensions`;
      this.vectors.set(faceId, Float32Array.from(point));
      this.assignVisitor(faceId, visitorId);
    }
    for (const faceId of metadata.deletedFaceIds) {
      if (!graphLabels.has(faceId) || this.vectors.has(faceId))
        return `deleted face ${faceId} does not match the graph`;
      this.possiblyDeletedLabels.add(faceId);
    }

    this.graph.setEf(this.settings.ef);
    this.lastSeqValue = metadata.lastSeq;
    this.lastPersistedAtValue = metadata.savedAt;
    this.generation = metadata.generation;
    return null;
  }

  private insertIntoGraph(faceId: number, unit: Float32Array): void {
    const point = Array.from(unit);
    if (this.possiblyDeletedLabels.delete(faceId) && this.unmarkIfStillInGraph(faceId)) {
      // The label is live again; addPoint on an existing live label replaces its vector.
      this.graph.addPoint(point, faceId);
      return;
    }

    if (
      this.deletedSlotCount() === 0 &&
      this.graph.getCurrentCount() >= this.graph.getMaxElements()
    ) {
      this.graph.resizeIndex(Math.max(1, this.graph.getMaxElements() * 2));
    }
    // replaceDeleted = true takes a deleted slot when there is one. It is only safe
    // for labels absent from the graph: hnswlib would otherwise map one label to two slots.
    this.graph.addPoint(point, faceId, true);
  }

  /**
   * Clears the delete mark of `faceId` and returns true, or returns false when a
   * newer face has taken over its slot. In hnswlib 0.8.0 unmarkDelete fails only for
   * a missing label or a label that is not deleted, and this label was removed and not revived since.
   */
  private unmarkIfStillInGraph(faceId: number): boolean {
    try {
      this.graph.unmarkDelete(faceId);
      return true;
    } catch {
      return false;
    }
  }

  private deletedSlotCount(): number {
    return this.graph.getCurrentCount() - this.vectors.count;
  }

  private exactNeighbours(query: Float32Array, faceCount: number): ScoredFace[] {
    const { rows, scores } = exactTopK(
      this.vectors.rows,
      this.vectors.count,
      this.settings.dim,
      query,
      faceCount,
    );
    return rows.map((row, position) => ({
      faceId: this.vectors.faceIdAt(row),
      similarity: clampSimilarity(scores[position]!),
    }));
  }

  private graphNeighbours(
    query: Float32Array,
    faceCount: number,
    ef: number | undefined,
  ): ScoredFace[] {
    const searchEf = ef ?? this.settings.ef;
    if (searchEf !== this.settings.ef) this.graph.setEf(searchEf);
    try {
      const { neighbors, distances } = this.graph.searchKnn(Array.from(query), faceCount);
      // The 'ip' space reports distance = 1 - inner product.
      return neighbors.map((faceId, position) => ({
        faceId,
        similarity: clampSimilarity(1 - distances[position]!),
      }));
    } finally {
      if (searchEf !== this.settings.ef) this.graph.setEf(this.settings.ef);
    }
  }

  private bestFacePerVisitor(neighbours: ScoredFace[], maxVisitors: number): FaceCandidate[] {
    const candidates: FaceCandidate[] = [];
    const seenVisitors = new Set<string>();
    for (const { faceId, similarity } of neighbours) {
      const visitorId = this.visitorByFace.get(faceId);
      if (visitorId === undefined) {
        throw new FaceGateError(
          'INTERNAL',
          `search returned face ${faceId}, which is not live in the index; rebuild the index`,
        );
      }
      if (seenVisitors.has(visitorId)) continue;
      seenVisitors.add(visitorId);
      candidates.push({ visitorId, faceId, similarity });
      if (candidates.length === maxVisitors) break;
    }
    return candidates;
  }

  /**
   * Scores every visitor among `neighbours` by their template and returns the best
   * `maxVisitors`, each with their face nearest to the query.
   */
  private bestTemplates(
    query: Float32Array,
    neighbours: ScoredFace[],
    maxVisitors: number,
  ): FaceCandidate[] {
    const candidates = this.bestFacePerVisitor(neighbours, Number.POSITIVE_INFINITY);
    for (const candidate of candidates) {
      // The template of a visitor with one face is that face, whose similarity is known.
      if (this.facesByVisitor.get(candidate.visitorId)!.size === 1) continue;
      candidate.similarity = clampSimilarity(this.templateSimilarity(query, candidate.visitorId));
    }
    candidates.sort((a, b) => b.similarity - a.similarity);
    return candidates.slice(0, maxVisitors);
  }

  /**
   * Returns the cosine similarity between `query` and the normalised mean of a visitor's
   * live faces. The mean is made for each search, not kept, because a few candidates with a
   * few faces each cost microseconds and the templates of 100,000 visitors would take 50 MB.
   */
  private templateSimilarity(query: Float32Array, visitorId: string): number {
    const rows = this.vectors.rows;
    const dim = this.settings.dim;
    const faceIds = this.facesByVisitor.get(visitorId)!;
    const sum = this.templateScratch.fill(0);
    for (const faceId of faceIds) {
      const offset = this.vectors.offsetOf(faceId);
      for (let d = 0; d < dim; d += 1) sum[d]! += rows[offset + d]!;
    }
    const norm = Math.sqrt(dotAt(sum, 0, sum));
    // Faces of one person are never opposite; a zero mean would only come from such data.
    return norm > 0 ? dotAt(sum, 0, query) / norm : 0;
  }

  private assignVisitor(faceId: number, visitorId: string): void {
    const previous = this.visitorByFace.get(faceId);
    if (previous === visitorId) return;
    if (previous !== undefined) this.unassignVisitor(faceId);

    this.visitorByFace.set(faceId, visitorId);
    let faces = this.facesByVisitor.get(visitorId);
    if (faces === undefined) {
      faces = new Set();
      this.facesByVisitor.set(visitorId, faces);
    }
    faces.add(faceId);
  }

  private unassignVisitor(faceId: number): void {
    const visitorId = this.visitorByFace.get(faceId);
    if (visitorId === undefined) return;
    this.visitorByFace.delete(faceId);
    const faces = this.facesByVisitor.get(visitorId);
    faces?.delete(faceId);
    if (faces?.size === 0) this.facesByVisitor.delete(visitorId);
  }
}

function resolveOptions(options: FaceIndexOptions): Settings {
  if (typeof options?.modelId !== 'string' || options.modelId.length === 0) {
    throw new FaceGateError(
      'CONFIG_INVALID',
      'modelId is missing; name the model that produced the face features',
    );
  }
  const settings: Settings = {
    modelId: options.modelId,
    dim: options.dim ?? DEFAULT_FACE_INDEX_OPTIONS.dim,
    M: options.M ?? DEFAULT_FACE_INDEX_OPTIONS.M,
    efConstruction: options.efConstruction ?? DEFAULT_FACE_INDEX_OPTIONS.efConstruction,
    ef: options.ef ?? DEFAULT_FACE_INDEX_OPTIONS.ef,
    initialCapacity: options.initialCapacity ?? DEFAULT_FACE_INDEX_OPTIONS.initialCapacity,
    exactSearchMaxFaces:
      options.exactSearchMaxFaces ?? DEFAULT_FACE_INDEX_OPTIONS.exactSearchMaxFaces,
  };
  assertIntegerInRange('CONFIG_INVALID', 'dim', settings.dim, 1, 65_536);
  // hnswlib keeps the base-layer link count (2M) in 16 bits.
  assertIntegerInRange('CONFIG_INVALID', 'M', settings.M, 2, 32_767);
  assertIntegerInRange('CONFIG_INVALID', 'efConstruction', settings.efConstruction, 1);
  assertIntegerInRange('CONFIG_INVALID', 'ef', settings.ef, 1);
  assertIntegerInRange(
    'CONFIG_INVALID',
    'initialCapacity',
    settings.initialCapacity,
    1,
    0xffff_ffff,
  );
  assertIntegerInRange('CONFIG_INVALID', 'exactSearchMaxFaces', settings.exactSearchMaxFaces, 0);
  return settings;
}

/**
 * Derives a unit vector from the face id alone (xorshift32 seeded with it), to write over
 * the vector of a removed face. It is random-looking rather than constant so that
 * deleted nodes do not all collapse onto one point of the graph.
 */
function erasedVector(faceId: number, dim: number): number[] {
  let state = (faceId ^ 0x9e3779b9) >>> 0 || 1;
  const values = new Array<number>(dim);
  let sumOfSquares = 0;
  for (let i = 0; i < dim; i += 1) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const value = state / 0xffff_ffff - 0.5;
    values[i] = value;
    sumOfSquares += value * value;
  }
  const norm = Math.sqrt(sumOfSquares) || 1;
  return values.map((value) => value / norm);
}

function sameVector(a: Float32Array, b: Float32Array): boolean {
  for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

/** Float32 rounding can push the inner product of unit vectors just past ±1. */
function clampSimilarity(value: number): number {
  return Math.max(-1, Math.min(1, value));
}

/** Inner product of `vector` with the `vector.length` values of `rows` from `offset`. */
function dotAt(rows: Float32Array, offset: number, vector: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < vector.length; i += 1) sum += rows[offset + i]! * vector[i]!;
  return sum;
}
