import type { SerializedError } from '@facegate/errors';

/** Options of a detection, as accepted from clients. */
export interface DetectParams {
  minScore?: number;
  maxFaces?: number;
}

/** Everything a job needs to reply to the gateway that sent it. */
export interface ReplyAddress {
  /** Correlation id: the gateway's request id for this job, also the BullMQ job id. */
  correlationId: string;
  /** Pub/sub channel of the gateway instance waiting for the reply. */
  replyTo: string;
  /** Request id carried through logs of every process. */
  requestId: string;
  /**
   * Time (Unix epoch ms, the gateway's clock) at which the gateway stops waiting and responds
   * with 504. Work on a job past it is skipped, and a job that would store something stops before
   * the write. Absent in jobs from gateways older than the field.
   */
  deadline?: number;
}

/** A face as returned by detection, in original image coordinates. */
export interface FaceDetection {
  box: { x: number; y: number; width: number; height: number };
  score: number;
  landmarks: [number, number][];
}

/** A detected face with its embedding, encoded as base64 of little-endian float32. */
export interface EmbeddedFace extends FaceDetection {
  embedding: string;
}

export interface ImageSize {
  width: number;
  height: number;
}

/** Jobs of the inference queue. The image travels as a Redis blob key, not in the job. */
export type InferenceJob =
  | (ReplyAddress & { kind: 'detect'; blobKey: string; params: DetectParams })
  | (ReplyAddress & {
      kind: 'recognize';
      blobKey: string;
      params: DetectParams;
      match: MatchParams;
    })
  | (ReplyAddress & {
      kind: 'enrol';
      blobKey: string;
      visitorId: string;
      /**
       * 'strict' rejects several faces with MULTIPLE_FACES; 'largest' takes the largest and
       * 'centre' the one whose box centre is nearest the image centre.
       */
      multipleFaces: 'strict' | 'largest' | 'centre';
      /** API key of the caller, recorded in the audit log with the new face; null when open. */
      keyId?: string | null;
    })
  | (ReplyAddress & {
      kind: 'verify';
      blobKeys: [string] | [string, string];
      /** With one image: compare it with the stored faces of this visitor. */
      visitorId?: string;
      threshold?: number;
    });

export interface MatchParams {
  topK: number;
  /** Identification threshold override; undefined uses the matcher's default for the model. */
  threshold?: number;
  /** The change-feed sequence the result must reflect at least (read-your-writes for the gateway). */
  minSeq: number;
}

/** Jobs of the match queue, sent by inference workers and answered by the matcher. */
export type MatchJob = ReplyAddress & {
  kind: 'identify';
  modelId: string;
  image: ImageSize;
  faces: EmbeddedFace[];
  params: MatchParams;
  /** Milliseconds spent per stage before the match, passed through for the reply. */
  timings: Record<string, number>;
};

export interface MatchCandidate {
  visitorId: string;
  externalId: string | null;
  name: string;
  similarity: number;
}

export interface RecognizedFace extends FaceDetection {
  match: MatchCandidate | null;
  candidates: MatchCandidate[];
}

export interface DetectResult {
  image: ImageSize;
  faces: FaceDetection[];
  timings: Record<string, number>;
}

export interface RecognizeResult {
  image: ImageSize;
  modelId: string;
  threshold: number;
  faces: RecognizedFace[];
  timings: Record<string, number>;
}

export interface EnrolResult {
  face: {
    id: number;
    visitorId: string;
    modelId: string;
    detectionScore: number;
    box: FaceDetection['box'];
    faceSize: number;
    imageSha256: string;
    createdAt: string;
  };
  /** False when the same image was already stored for this visitor. */
  created: boolean;
  /** Change-feed sequence after the write; the gateway waits for the matcher to reach it. */
  seq: number;
  facesDetected: number;
}

export interface VerifyResult {
  similarity: number;
  match: boolean;
  threshold: number;
  modelId: string;
}

/** The message published on a gateway's reply channel. */
export type Reply =
  | { correlationId: string; ok: true; result: unknown }
  | { correlationId: string; ok: false; error: SerializedError };

export function encodeVector(vector: Float32Array): string {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
}

export function decodeVector(encoded: string): Float32Array {
  const bytes = Buffer.from(encoded, 'base64');
  if (bytes.length % 4 !== 0)
    throw new Error(`encoded vector has ${bytes.length} bytes, not a multiple of 4`);
  const copy = new Uint8Array(bytes);
  return new Float32Array(copy.buffer, 0, copy.length / 4);
}

/**
 * Jobs of the batch queue. 'plan' enumerates a batch's source into items; 'items'
 * extracts a few images (up to BATCH_ITEMS_PER_JOB). Item details live in PostgreSQL
 * (batch_items), so a job only names its items. 'item' (one image) is what earlier
 * versions queued; workers still run such jobs left in Redis.
 */
export type BatchJob =
  | { kind: 'plan'; batchId: string; requestId: string }
  | { kind: 'items'; batchId: string; itemKeys: string[] }
  | { kind: 'item'; batchId: string; itemKey: string };
