/**
 * Identification of the faces of a match job: each face's nearest visitors in the
 * index, named from the database, with the best one as the match when it reaches the threshold.
 */
import { performance } from 'node:perf_hooks';

import type {
  MatchCandidate,
  MatchJob,
  RecognizeResult,
  RecognizedFace,
} from '@facegate/contracts';
import { decodeVector, defaultIdentifyThreshold } from '@facegate/contracts';
import type { Database } from '@facegate/db';
import { getVisitorsByIds } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import type { FaceCandidate, VisitorScoring } from '@facegate/index';
import type { Logger } from '@facegate/logger';

import type { VisitorLookup, VisitorName } from './visitor-cache.js';

/** The part of IndexService that identification uses. */
export interface MatchIndex {
  readonly modelId: string;
  /** Score of a visitor with several faces in search; the default threshold depends on it. */
  readonly scoring: VisitorScoring;
  readonly lastSeq: number;
  assertServing(): void;
  waitForSeq(minSeq: number, timeoutMs: number): Promise<boolean>;
  search(vector: ArrayLike<number>, k: number): FaceCandidate[];
}

export interface IdentifyDependencies {
  index: MatchIndex;
  db: Database;
  /** Cached visitor names; without it every request reads them from `db`. */
  visitors?: VisitorLookup;
  /** IDENTIFY_THRESHOLD; undefined uses the model's calibrated default. */
  identifyThreshold?: number;
  /** Milliseconds to wait for the index to reach a job's minSeq before searching it as it is. Default 2000. */
  minSeqWaitMs?: number;
}

export const DEFAULT_MIN_SEQ_WAIT_MS = 2000;

/**
 * Identifies every face of a match job. `logger`, or the function that makes it (see
 * lazyChild), is used only for a request the index could not catch up with.
 * Throws FaceGateError INVALID_REQUEST for a malformed job, MODEL_MISMATCH when the job's
 * model or the database's faces differ from the index's model, and the database's
 * errors (DEPENDENCY_UNAVAILABLE) when visitors cannot be read.
 */
export async function identify(
  job: MatchJob,
  dependencies: IdentifyDependencies,
  logger: Logger | (() => Logger),
): Promise<RecognizeResult> {
  const startedMs = performance.now();
  const { index } = dependencies;
  validateMatchJob(job);
  index.assertServing();
  if (job.modelId !== index.modelId) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `the faces were embedded with model '${job.modelId}', but the index contains features of ` +
        `'${index.modelId}'; run the inference workers and the matcher with the same FACE_EMBEDDER`,
      { details: { modelId: job.modelId, indexModelId: index.modelId } },
    );
  }

  const minSeq = job.params.minSeq;
  const waitMs = dependencies.minSeqWaitMs ?? DEFAULT_MIN_SEQ_WAIT_MS;
  if (!(await index.waitForSeq(minSeq, waitMs))) {
    (typeof logger === 'function' ? logger() : logger).warn(
      { minSeq, lastSeq: index.lastSeq, waitedMs: waitMs },
      'the face index did not reach the requested minSeq in time; identifying against an older state',
    );
  }

  const hits = job.faces.map((face, position) =>
    index.search(decodeFaceEmbedding(face.embedding, position), job.params.topK),
  );
  // One lookup (at most one query) for every visitor of every face.
  const visitorIds = hits.flat().map((hit) => hit.visitorId);
  const visitors = dependencies.visitors
    ? await dependencies.visitors.get(visitorIds)
    : await getVisitorsByIds(dependencies.db, visitorIds);

  const threshold =
    job.params.threshold ??
    dependencies.identifyThreshold ??
    defaultIdentifyThreshold(index.modelId, index.scoring);
  const faces = job.faces.map((face, position): RecognizedFace => {
    const candidates = nameCandidates(hits[position] ?? [], visitors);
    const best = candidates[0];
    return {
      box: face.box,
      score: face.score,
      landmarks: face.landmarks,
      match: best !== undefined && best.similarity >= threshold ? best : null,
      candidates,
    };
  });

  return {
    image: job.image,
    modelId: index.modelId,
    threshold,
    faces,
    timings: { ...job.timings, matchMs: roundMs(performance.now() - startedMs) },
  };
}

/** Adds name and externalId; drops visitors deleted since the index last caught up. */
function nameCandidates(
  hits: FaceCandidate[],
  visitors: Map<string, VisitorName>,
): MatchCandidate[] {
  const candidates: MatchCandidate[] = [];
  for (const hit of hits) {
    const visitor = visitors.get(hit.visitorId.toLowerCase());
    if (visitor === undefined) continue;
    candidates.push({
      visitorId: visitor.id,
      externalId: visitor.externalId,
      name: visitor.name,
      similarity: hit.similarity,
    });
  }
  return candidates;
}

function decodeFaceEmbedding(encoded: string, position: number): Float32Array {
  try {
    return decodeVector(encoded);
  } catch (error) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `faces[${position}].embedding is not base64 of float32 values: ${errorMessage(error)}`,
      { cause: error },
    );
  }
}

/**
 * Checks the fields identify reads, since a job comes from another process.
 * Throws FaceGateError INVALID_REQUEST naming the first invalid field.
 */
export function validateMatchJob(job: MatchJob): void {
  const invalid = (field: string, expected: string, value: unknown): FaceGateError =>
    new FaceGateError(
      'INVALID_REQUEST',
      `match job field ${field} is ${describe(value)}; expected ${expected}`,
      { details: { field } },
    );

  if (job.kind !== 'identify') throw invalid('kind', "'identify'", job.kind);
  if (typeof job.modelId !== 'string' || job.modelId === '') {
    throw invalid('modelId', 'a model id', job.modelId);
  }
  if (!Array.isArray(job.faces)) throw invalid('faces', 'an array', job.faces);
  job.faces.forEach((face, position) => {
    if (typeof face?.embedding !== 'string') {
      throw invalid(`faces[${position}].embedding`, 'a base64 string', face?.embedding);
    }
  });

  const params: Partial<Record<keyof MatchJob['params'], unknown>> = job.params ?? {};
  const { topK, threshold, minSeq } = params;
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 1) {
    throw invalid('params.topK', 'an integer of at least 1', topK);
  }
  if (threshold !== undefined && (typeof threshold !== 'number' || !(Math.abs(threshold) <= 1))) {
    throw invalid('params.threshold', 'a cosine similarity from -1 to 1, or absent', threshold);
  }
  if (typeof minSeq !== 'number' || !Number.isSafeInteger(minSeq) || minSeq < 0) {
    throw invalid('params.minSeq', 'a non-negative integer', minSeq);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const json = JSON.stringify(value);
  if (json === undefined) return `a ${typeof value}`;
  return json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Rounds to microseconds, as the inference workers round their stage timings. */
function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
