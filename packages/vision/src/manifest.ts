import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { findRepoRoot } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';

import type { TensorRange } from './quantize.js';

/** A tensor dimension: a number is fixed, a string names a dynamic axis. */
export type Dimension = number | string;

export interface TensorContract {
  name: string;
  type: 'float32' | 'uint8';
  shape: Dimension[];
}

export interface PreprocessingProfile {
  profile: 'yunet' | 'mobilefacenet' | 'sface';
  channelOrder: 'RGB' | 'BGR';
  layout: 'NCHW';
  /** Multiplier applied to the 0-255 value before mean and std. */
  scale: number;
  mean: [number, number, number];
  std: [number, number, number];
}

export interface ModelEntry {
  name: string;
  role: 'detector' | 'embedder';
  file: string;
  bytes: number;
  sha256: string;
  url: string;
  licence: string;
  inputs: TensorContract[];
  outputs: TensorContract[];
  preprocessing: PreprocessingProfile;
  /** False when the tensor names were not read off the real file; then only shapes are checked. */
  namesVerified?: boolean;
  inputSize?: { fixed: [number, number] } | { multipleOf: number };
  embeddingDim?: number;
  /** 'dynamic' when the first input axis takes any batch size. */
  batch?: number | 'dynamic';
  /**
   * Set on a model derived from `file` by int8 quantization when it is loaded; `calibration`
   * is the activation-range file, relative to models/.
   */
  quantization?: { calibration: string };
}

/** Activation ranges of one float model, written by `npm run calibrate`. */
export interface CalibrationFile {
  /** sha256 of the float model file the ranges were measured with. */
  sha256: string;
  ranges: Record<string, TensorRange>;
}

export interface ModelManifest {
  alignmentTemplate112: [number, number][];
  models: ModelEntry[];
}

/** Detector names accepted by FACE_DETECTOR, mapped to manifest entries. */
export const DETECTOR_MODELS = {
  yunet_2026may: 'yunet_2026may',
  yunet_2023mar: 'yunet_2023mar',
} as const;

/** Embedder names accepted by FACE_EMBEDDER, mapped to manifest entries. */
export const EMBEDDER_MODELS = {
  mobilefacenet: 'mobilefacenet_foamliu_128d',
  sface: 'sface_2021dec',
  sface_int8: 'sface_2021dec_int8',
  mobilefacenet_int8: 'mobilefacenet_foamliu_128d_int8',
} as const;

let cached: ModelManifest | undefined;

export function manifestPath(): string {
  return join(findRepoRoot(), 'models', 'manifest.json');
}

export function readManifest(): ModelManifest {
  cached ??= JSON.parse(readFileSync(manifestPath(), 'utf8')) as ModelManifest;
  return cached;
}

export function manifestEntry(name: string): ModelEntry {
  const entry = readManifest().models.find((model) => model.name === name);
  if (!entry) throw new Error(`model '${name}' is not in ${manifestPath()}`);
  return entry;
}

/** Reads the calibration of a quantized entry and checks that it belongs to the entry's file. */
export function readCalibration(entry: ModelEntry): CalibrationFile {
  if (!entry.quantization) throw new Error(`model '${entry.name}' is not a quantized model`);
  const path = join(findRepoRoot(), 'models', entry.quantization.calibration);
  let calibration: CalibrationFile;
  try {
    calibration = JSON.parse(readFileSync(path, 'utf8')) as CalibrationFile;
  } catch (error) {
    throw new FaceGateError(
      'MODEL_UNAVAILABLE',
      `the calibration of model '${entry.name}' cannot be read from ${path}: ${String(error)}`,
      { cause: error },
    );
  }
  if (calibration.sha256 !== entry.sha256) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `the calibration ${path} was measured on a model file with sha256 ${calibration.sha256}, ` +
        `but '${entry.name}' uses ${entry.sha256}; run 'npm run calibrate' to measure it again`,
    );
  }
  return calibration;
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}
