import { performance } from 'node:perf_hooks';

import type { Config } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';
import sharp from 'sharp';

import { alignFace } from './align.js';
import { type DecodedImage, decodeImage } from './decode.js';
import { type DetectOptions, YunetDetector, assertDetectorModel } from './detector.js';
import { Embedder } from './embedder.js';
import { RGB_INPUT } from './rgb-input.js';
import { DETECTOR_MODELS, EMBEDDER_MODELS, manifestEntry } from './manifest.js';
import { type LoadedModel, type SessionOptions, loadModel } from './session.js';
import type { DetectedFace, FaceEmbedding, RgbImage, StageTimings } from './types.js';

export type VisionConfig = Pick<
  Config,
  | 'modelsDir'
  | 'faceDetector'
  | 'faceEmbedder'
  | 'detectorInputSize'
  | 'detectionMinScore'
  | 'detectionNmsIou'
  | 'detectionMaxFaces'
  | 'minFaceSize'
  | 'maxImageBytes'
  | 'maxImagePixels'
  | 'onnxThreads'
> & {
  /**
   * Lets idle intra-op threads spin between operators. Only for sessions that
   * run while nothing else wants the cores: see SessionOptions.spinning.
   */
  onnxSpinning?: boolean;
};

export interface ModelInfo {
  id: string;
  role: 'detector' | 'embedder';
  file: string;
  sha256: string;
  /** Bits of the int8 weights of a model quantized on loading. */
  weightBits?: 7 | 8;
}

export interface DetectionResult {
  image: { width: number; height: number };
  faces: DetectedFace[];
  timings: Pick<StageTimings, 'decodeMs' | 'detectMs'>;
}

export interface AnalyzedFace extends DetectedFace {
  embedding: FaceEmbedding;
}

export interface AnalysisResult {
  image: { width: number; height: number };
  faces: AnalyzedFace[];
  timings: StageTimings;
}

function elapsedSince(start: number): number {
  return performance.now() - start;
}

function sessionOptions(config: VisionConfig): SessionOptions {
  return {
    modelsDir: config.modelsDir,
    threads: config.onnxThreads,
    spinning: config.onnxSpinning ?? false,
  };
}

async function loadEmbedderModel(config: VisionConfig): Promise<LoadedModel> {
  const entry = manifestEntry(EMBEDDER_MODELS[config.faceEmbedder]);
  try {
    return await loadModel(entry, sessionOptions(config));
  } catch (error) {
    if (
      error instanceof FaceGateError &&
      error.code === 'MODEL_UNAVAILABLE' &&
      !config.faceEmbedder.startsWith('mobilefacenet')
    ) {
      throw new FaceGateError(
        'MODEL_UNAVAILABLE',
        `FACE_EMBEDDER=${config.faceEmbedder} needs ${entry.file}, which is not in ${config.modelsDir}. ` +
          `Its weights cannot be downloaded without internet access: put the file in MODELS_MIRROR and run ` +
          `'npm run setup', or set FACE_EMBEDDER=mobilefacenet to use MobileFaceNet.`,
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * The in-process vision pipeline: decode, detect (YuNet), align (five-point
 * similarity to 112x112) and embed. Create one per thread: it owns two
 * onnxruntime sessions, which are reused for every call.
 */
export class FacePipeline {
  readonly config: VisionConfig;
  readonly detector: YunetDetector;
  readonly embedder: Embedder;

  private constructor(config: VisionConfig, detector: YunetDetector, embedder: Embedder) {
    this.config = config;
    this.detector = detector;
    this.embedder = embedder;
  }

  static async create(config: VisionConfig): Promise<FacePipeline> {
    // One libvips thread per decode: each image is small, and the service gets
    // its parallelism from several workers rather than from threads per image.
    // No image is decoded twice, so libvips's operation cache only costs time and memory.
    sharp.concurrency(1);
    sharp.cache(false);
    const detectorEntry = manifestEntry(DETECTOR_MODELS[config.faceDetector]);
    const detectorModel = await loadModel(detectorEntry, sessionOptions(config), RGB_INPUT);
    assertDetectorModel(detectorModel);
    const embedderModel = await loadEmbedderModel(config);
    return new FacePipeline(
      config,
      new YunetDetector(detectorModel, config.detectorInputSize),
      new Embedder(embedderModel),
    );
  }

  get modelId(): string {
    return this.embedder.modelId;
  }

  get models(): ModelInfo[] {
    return [this.detector.model, this.embedder.model].map((model) => ({
      id: model.entry.name,
      role: model.entry.role,
      file: model.entry.file,
      sha256: model.sha256,
      ...(model.weightBits ? { weightBits: model.weightBits } : {}),
    }));
  }

  detectOptions(overrides: Partial<DetectOptions> = {}): DetectOptions {
    return {
      minScore: overrides.minScore ?? this.config.detectionMinScore,
      nmsIou: overrides.nmsIou ?? this.config.detectionNmsIou,
      // DETECTION_MAX_FACES bounds the work per image: a request may ask for fewer faces only.
      maxFaces: Math.min(
        overrides.maxFaces ?? this.config.detectionMaxFaces,
        this.config.detectionMaxFaces,
      ),
      minFaceSize: overrides.minFaceSize ?? this.config.minFaceSize,
    };
  }

  decode(bytes: Uint8Array): Promise<DecodedImage> {
    return decodeImage(bytes, {
      maxImageBytes: this.config.maxImageBytes,
      maxImagePixels: this.config.maxImagePixels,
    });
  }

  /** Decodes and detects: faces in original image coordinates, in the detector's order. */
  async detect(
    bytes: Uint8Array,
    overrides: Partial<DetectOptions> = {},
  ): Promise<DetectionResult> {
    const { image, faces, timings } = await this.#decodeAndDetect(bytes, overrides);
    return { image: { width: image.width, height: image.height }, faces, timings };
  }

  async #decodeAndDetect(
    bytes: Uint8Array,
    overrides: Partial<DetectOptions>,
  ): Promise<{ image: DecodedImage; faces: DetectedFace[]; timings: DetectionResult['timings'] }> {
    const decodeStart = performance.now();
    const image = await this.decode(bytes);
    const decodeMs = elapsedSince(decodeStart);

    const detectStart = performance.now();
    const faces = await this.detector.detect(image, this.detectOptions(overrides));
    const detectMs = elapsedSince(detectStart);

    return { image, faces, timings: { decodeMs, detectMs } };
  }

  /** Aligns and embeds the given faces of an already decoded image. */
  async embedFaces(
    image: RgbImage,
    faces: readonly DetectedFace[],
  ): Promise<{ embeddings: FaceEmbedding[]; alignMs: number; embedMs: number }> {
    const alignStart = performance.now();
    const crops = faces.map((face) => alignFace(image, face.landmarks));
    const alignMs = elapsedSince(alignStart);

    const embedStart = performance.now();
    const embeddings = await this.embedder.embed(crops);
    const embedMs = elapsedSince(embedStart);
    return { embeddings, alignMs, embedMs };
  }

  /** The whole pipeline: every face found, each with its embedding. */
  async analyze(
    bytes: Uint8Array,
    overrides: Partial<DetectOptions> = {},
  ): Promise<AnalysisResult> {
    const { image, faces, timings } = await this.#decodeAndDetect(bytes, overrides);
    const { embeddings, alignMs, embedMs } = await this.embedFaces(image, faces);
    return {
      image: { width: image.width, height: image.height },
      faces: faces.map((face, i) => ({ ...face, embedding: embeddings[i]! })),
      timings: { ...timings, alignMs, embedMs },
    };
  }

  async close(): Promise<void> {
    await Promise.allSettled([
      this.detector.model.session.release(),
      this.embedder.model.session.release(),
    ]);
  }
}

/** Picks the face whose box centre is nearest the point (x, y). */
export function faceNearest<T extends DetectedFace>(
  faces: readonly T[],
  x: number,
  y: number,
): T | undefined {
  let best: T | undefined;
  let bestDistance = Infinity;
  for (const face of faces) {
    const cx = face.box.x + face.box.width / 2;
    const cy = face.box.y + face.box.height / 2;
    const distance = Math.hypot(cx - x, cy - y);
    if (distance < bestDistance) {
      best = face;
      bestDistance = distance;
    }
  }
  return best;
}

/** The face with the largest box area, or undefined for none. */
export function largestFace<T extends DetectedFace>(faces: readonly T[]): T | undefined {
  let best: T | undefined;
  for (const face of faces) {
    if (!best || face.box.width * face.box.height > best.box.width * best.box.height) best = face;
  }
  return best;
}
