import type { DetectedFace, ModelInfo, StageTimings } from '@facegate/vision';

export interface ThreadParams {
  minScore?: number;
  maxFaces?: number;
}

export type ThreadRequest =
  | { op: 'ping' }
  | { op: 'detect'; bytes: Uint8Array; params: ThreadParams }
  | { op: 'analyze'; bytes: Uint8Array; params: ThreadParams };

export type ThreadResponse =
  | { op: 'ping'; modelId: string; models: ModelInfo[] }
  | {
      op: 'detect';
      image: { width: number; height: number };
      faces: DetectedFace[];
      timings: Partial<StageTimings>;
    }
  | {
      op: 'analyze';
      modelId: string;
      image: { width: number; height: number };
      faces: (DetectedFace & { embedding: Float32Array })[];
      timings: StageTimings;
    };
