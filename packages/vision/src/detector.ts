import { FaceGateError } from '@facegate/errors';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';

import type { LoadedModel } from './session.js';
import { expectDims } from './session.js';
import type { Box, DetectedFace, Landmarks, Point, RgbImage } from './types.js';

export interface DetectOptions {
  /** Drop candidates whose score = sqrt(cls * obj) is below this, in [0, 1]. */
  minScore: number;
  /** Overlap (intersection over union) above which the weaker of two boxes is dropped. */
  nmsIou: number;
  /** Keep at most this many faces, highest scores first. */
  maxFaces: number;
  /** Drop faces whose box is shorter than this on either side, in original pixels. */
  minFaceSize: number;
}

/**
 * A detector input: NHWC uint8 RGB, zero padding right and bottom. The model's graph turns it
 * into the NCHW float BGR planes that YuNet was exported with (see rgb-input.ts).
 */
export interface DetectorInput {
  pixels: Uint8Array;
  /** Input height and width (H before W, as in NHWC). */
  inputHeight: number;
  inputWidth: number;
  /** Size of the scaled image inside the padded tensor. */
  scaledWidth: number;
  scaledHeight: number;
}

const STRIDES = [8, 16, 32] as const;

/**
 * Computes the detector input size: the image is scaled down (never up) so its
 * longer side fits `maxSide`, then padded to a multiple of 32, or to the fixed
 * size of a fixed-input model.
 */
export function planDetectorInput(
  width: number,
  height: number,
  maxSide: number,
  fixedSize?: [number, number],
): { scaledWidth: number; scaledHeight: number; inputWidth: number; inputHeight: number } {
  const limit = fixedSize ? Math.min(fixedSize[0], fixedSize[1]) : maxSide;
  const scale = Math.min(1, limit / Math.max(width, height));
  const scaledWidth = Math.max(1, Math.round(width * scale));
  const scaledHeight = Math.max(1, Math.round(height * scale));
  if (fixedSize) {
    return { scaledWidth, scaledHeight, inputHeight: fixedSize[0], inputWidth: fixedSize[1] };
  }
  return {
    scaledWidth,
    scaledHeight,
    inputWidth: Math.ceil(scaledWidth / 32) * 32,
    inputHeight: Math.ceil(scaledHeight / 32) * 32,
  };
}

/**
 * Returns the detector input for interleaved RGB pixels: the pixels themselves when they
 * fill the input size, else a copy with zero padding right and bottom. `target` may be a
 * buffer of the input size from an earlier call, which is reused.
 */
export function toDetectorPixels(
  rgb: Uint8Array,
  width: number,
  height: number,
  inputWidth: number,
  inputHeight: number,
  target?: Uint8Array,
): Uint8Array {
  if (width === inputWidth && height === inputHeight) return rgb;
  const size = inputWidth * inputHeight * 3;
  const pixels = target?.length === size ? target : new Uint8Array(size);
  const row = width * 3;
  const paddedRow = inputWidth * 3;
  for (let y = 0; y < height; y += 1) {
    pixels.set(rgb.subarray(y * row, (y + 1) * row), y * paddedRow);
    if (target === pixels && width < inputWidth)
      pixels.fill(0, y * paddedRow + row, (y + 1) * paddedRow);
  }
  if (target === pixels) pixels.fill(0, height * paddedRow);
  return pixels;
}

/** Scales the image for the detector (sharp, linear kernel) and pads it to the input size. */
export async function prepareDetectorInput(
  image: RgbImage,
  maxSide: number,
  fixedSize?: [number, number],
  reuse?: Uint8Array,
): Promise<DetectorInput> {
  const plan = planDetectorInput(image.width, image.height, maxSide, fixedSize);
  let pixels = image.data;
  if (plan.scaledWidth !== image.width || plan.scaledHeight !== image.height) {
    const resized = await sharp(image.data, {
      raw: { width: image.width, height: image.height, channels: 3 },
    })
      .resize(plan.scaledWidth, plan.scaledHeight, { fit: 'fill', kernel: 'linear' })
      .raw()
      .toBuffer();
    pixels = new Uint8Array(resized.buffer, resized.byteOffset, resized.byteLength);
  }
  return {
    pixels: toDetectorPixels(
      pixels,
      plan.scaledWidth,
      plan.scaledHeight,
      plan.inputWidth,
      plan.inputHeight,
      reuse,
    ),
    inputWidth: plan.inputWidth,
    inputHeight: plan.inputHeight,
    scaledWidth: plan.scaledWidth,
    scaledHeight: plan.scaledHeight,
  };
}

/** The twelve YuNet outputs by name (cls_8 ... kps_32), each [1, anchors, channels]. */
export type YunetOutputs = Record<string, Float32Array>;

export interface Candidate {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  /** Ten values: x, y of each landmark. */
  landmarks: Float32Array;
}

const clamp01 = (value: number): number => (value < 0 ? 0 : value > 1 ? 1 : value);

/**
 * Decodes YuNet's raw outputs as OpenCV's FaceDetectorYN does (4.8+):
 * score = sqrt(clamp(cls) * clamp(obj)); box centre (col + dx) * s, (row + dy) * s;
 * box size exp(dw) * s, exp(dh) * s; landmark (kx + col) * s, (ky + row) * s.
 * Coordinates are in detector input pixels.
 */
export function decodeYunet(
  outputs: YunetOutputs,
  inputWidth: number,
  inputHeight: number,
  minScore: number,
): Candidate[] {
  const candidates: Candidate[] = [];
  for (const stride of STRIDES) {
    const cols = Math.floor(inputWidth / stride);
    const rows = Math.floor(inputHeight / stride);
    const cls = outputs[`cls_${stride}`]!;
    const obj = outputs[`obj_${stride}`]!;
    const bbox = outputs[`bbox_${stride}`]!;
    const kps = outputs[`kps_${stride}`]!;
    for (let row = 0; row < rows; row += 1) {
      for (let col = 0; col < cols; col += 1) {
        const anchor = row * cols + col;
        const score = Math.sqrt(clamp01(cls[anchor]!) * clamp01(obj[anchor]!));
        if (score < minScore) continue;

        const cx = (col + bbox[anchor * 4]!) * stride;
        const cy = (row + bbox[anchor * 4 + 1]!) * stride;
        const w = Math.exp(bbox[anchor * 4 + 2]!) * stride;
        const h = Math.exp(bbox[anchor * 4 + 3]!) * stride;
        const landmarks = new Float32Array(10);
        for (let k = 0; k < 5; k += 1) {
          landmarks[2 * k] = (kps[anchor * 10 + 2 * k]! + col) * stride;
          landmarks[2 * k + 1] = (kps[anchor * 10 + 2 * k + 1]! + row) * stride;
        }
        candidates.push({
          x1: cx - w / 2,
          y1: cy - h / 2,
          x2: cx + w / 2,
          y2: cy + h / 2,
          score,
          landmarks,
        });
      }
    }
  }
  return candidates;
}

function iou(a: Candidate, b: Candidate): number {
  const ix = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
  const iy = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
  const intersection = ix * iy;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - intersection;
  return union > 0 ? intersection / union : 0;
}

/** Greedy non-maximum suppression; returns the kept candidates, highest score first. */
export function nonMaxSuppression(candidates: Candidate[], maxIou: number): Candidate[] {
  const sorted = [...candidates].sort((a, b) => b.score - a.score);
  const kept: Candidate[] = [];
  for (const candidate of sorted) {
    if (kept.every((other) => iou(candidate, other) <= maxIou)) kept.push(candidate);
  }
  return kept;
}

const round2 = (value: number): number => Math.round(value * 100) / 100;

/**
 * Maps a candidate from detector input pixels to the original image: the box is
 * clipped to the image, landmarks are not (a face cut by the frame keeps them).
 */
function toOriginal(
  candidate: Candidate,
  scaleX: number,
  scaleY: number,
  width: number,
  height: number,
): DetectedFace {
  const x1 = Math.max(0, candidate.x1 * scaleX);
  const y1 = Math.max(0, candidate.y1 * scaleY);
  const x2 = Math.min(width, candidate.x2 * scaleX);
  const y2 = Math.min(height, candidate.y2 * scaleY);
  const box: Box = {
    x: round2(x1),
    y: round2(y1),
    width: round2(x2 - x1),
    height: round2(y2 - y1),
  };
  const points: Point[] = [];
  for (let k = 0; k < 5; k += 1) {
    points.push([
      round2(candidate.landmarks[2 * k]! * scaleX),
      round2(candidate.landmarks[2 * k + 1]! * scaleY),
    ]);
  }
  return {
    box,
    score: Math.round(candidate.score * 10000) / 10000,
    landmarks: points as Landmarks,
  };
}

/**
 * Orders faces deterministically: highest detection score first, then top to
 * bottom, then left to right.
 */
export function compareFaces(a: DetectedFace, b: DetectedFace): number {
  return b.score - a.score || a.box.y - b.box.y || a.box.x - b.box.x;
}

/** YuNet face detector over one onnxruntime session (one per thread). */
export class YunetDetector {
  readonly #model: LoadedModel;
  readonly #maxSide: number;
  readonly #fixedSize: [number, number] | undefined;
  /** Padded input buffer of an earlier call, reused when an image needs the same size. */
  #padded: Uint8Array | undefined;

  constructor(model: LoadedModel, maxSide: number) {
    this.#model = model;
    const size = model.entry.inputSize;
    this.#fixedSize = size && 'fixed' in size ? size.fixed : undefined;
    this.#maxSide = maxSide;
  }

  get model(): LoadedModel {
    return this.#model;
  }

  async detect(image: RgbImage, options: DetectOptions): Promise<DetectedFace[]> {
    const input = await prepareDetectorInput(image, this.#maxSide, this.#fixedSize, this.#padded);
    // Pixels that fill the input size are passed as they are, and stay the image's own.
    if (input.pixels !== image.data) this.#padded = input.pixels;
    const outputs = await this.run(input);
    const candidates = decodeYunet(outputs, input.inputWidth, input.inputHeight, options.minScore);
    const kept = nonMaxSuppression(candidates, options.nmsIou);

    const scaleX = image.width / input.scaledWidth;
    const scaleY = image.height / input.scaledHeight;
    return kept
      .map((candidate) => toOriginal(candidate, scaleX, scaleY, image.width, image.height))
      .filter((face) => Math.min(face.box.width, face.box.height) >= options.minFaceSize)
      .sort(compareFaces)
      .slice(0, options.maxFaces);
  }

  /** Runs the bare model on a prepared input and returns its outputs by name. */
  async run(input: DetectorInput): Promise<YunetOutputs> {
    const feeds = {
      [this.#model.inputNames[0]!]: new ort.Tensor('uint8', input.pixels, [
        1,
        input.inputHeight,
        input.inputWidth,
        3,
      ]),
    };
    const results = await this.#model.session.run(feeds);
    const outputs: YunetOutputs = {};
    for (const stride of STRIDES) {
      const anchors = (input.inputHeight / stride) * (input.inputWidth / stride);
      for (const [kind, channels] of [
        ['cls', 1],
        ['obj', 1],
        ['bbox', 4],
        ['kps', 10],
      ] as const) {
        const name = `${kind}_${stride}`;
        outputs[name] = expectDims(this.#model, name, results[name], [1, anchors, channels]);
      }
    }
    return outputs;
  }
}

export function assertDetectorModel(model: LoadedModel): void {
  if (model.entry.role !== 'detector') {
    throw new FaceGateError('MODEL_MISMATCH', `model '${model.entry.name}' is not a detector`);
  }
}
