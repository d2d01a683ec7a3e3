/** A decoded, upright image: 8-bit sRGB, interleaved RGB, rows top to bottom (HWC). */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  /** width * height * 3 bytes, R G B per pixel. */
  readonly data: Uint8Array;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A point as [x, y] in pixels of the upright original image. */
export type Point = [number, number];

/**
 * The five YuNet landmarks in this order: right eye, left eye, nose tip,
 * right mouth corner, left mouth corner (right and left from the subject's
 * point of view, so the right eye has the smaller x in a frontal photo).
 */
export type Landmarks = [Point, Point, Point, Point, Point];

export interface DetectedFace {
  box: Box;
  /** Detector confidence in [0, 1]; unrelated to identity similarity. */
  score: number;
  landmarks: Landmarks;
}

/** An L2-normalised face feature vector tagged with the model that produced it. */
export interface FaceEmbedding {
  modelId: string;
  vector: Float32Array;
}

/** Milliseconds spent in each stage of one pipeline call. */
export interface StageTimings {
  decodeMs: number;
  detectMs: number;
  alignMs: number;
  embedMs: number;
}
