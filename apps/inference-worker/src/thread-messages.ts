import type { SerializedError } from '@facegate/errors';
import type { DetectedFace, FastJpegStatus, ModelInfo, StageTimings } from '@facegate/vision';

export interface ThreadParams {
  minScore?: number;
  maxFaces?: number;
}

/**
 * A task for a vision thread. `idle` runs it on the sessions with ONNX_IDLE_THREADS
 * threads. The pool sets it only while no other job is active or waiting.
 */
export type ThreadRequest =
  | { op: 'ping' }
  | { op: 'detect'; bytes: Uint8Array; params: ThreadParams; idle: boolean }
  | { op: 'analyze'; bytes: Uint8Array; params: ThreadParams; idle: boolean }
  | { op: 'analyzeEach'; images: Uint8Array[]; params: ThreadParams; idle: boolean };

/** The faces, image size and stage timings that analyze finds in one image. */
export interface ImageAnalysis {
  modelId: string;
  image: { width: number; height: number };
  faces: (DetectedFace & { embedding: Float32Array })[];
  timings: StageTimings;
}

export type ThreadResponse =
  | {
      op: 'ping';
      modelId: string;
      models: ModelInfo[];
      idleThreads: number | null;
      fastJpeg: FastJpegStatus;
    }
  | {
      op: 'detect';
      image: { width: number; height: number };
      faces: DetectedFace[];
      timings: Partial<StageTimings>;
    }
  | ({ op: 'analyze' } & ImageAnalysis)
  | { op: 'analyzeEach'; results: (ImageAnalysis | { error: SerializedError })[] };
