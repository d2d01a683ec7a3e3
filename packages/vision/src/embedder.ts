import { FaceGateError } from '@facegate/errors';
import * as ort from 'onnxruntime-node';

import { ALIGNED_SIZE } from './align.js';
import type { PreprocessingProfile } from './manifest.js';
import type { LoadedModel } from './session.js';
import { expectDims } from './session.js';
import type { FaceEmbedding } from './types.js';

/**
 * Converts an aligned 112x112 RGB crop (HWC, 0-255) to the model's NCHW input:
 * channel order, then value * scale, minus mean, divided by std per channel.
 */
export function toEmbedderTensor(
  crop: Uint8Array,
  profile: PreprocessingProfile,
  target = new Float32Array(3 * ALIGNED_SIZE * ALIGNED_SIZE),
  offset = 0,
): Float32Array {
  const plane = ALIGNED_SIZE * ALIGNED_SIZE;
  // Source channel (0 = R, 1 = G, 2 = B) that feeds each output plane.
  const order = profile.channelOrder === 'RGB' ? [0, 1, 2] : [2, 1, 0];
  for (let planeIndex = 0; planeIndex < 3; planeIndex += 1) {
    const sourceChannel = order[planeIndex]!;
    const multiplier = profile.scale / profile.std[planeIndex]!;
    const shift = profile.mean[planeIndex]! / profile.std[planeIndex]!;
    const base = offset + planeIndex * plane;
    for (let i = 0; i < plane; i += 1) {
      target[base + i] = crop[i * 3 + sourceChannel]! * multiplier - shift;
    }
  }
  return target;
}

/** Scales `vector` in place to unit length; a zero vector is a model failure. */
export function l2Normalize(vector: Float32Array): Float32Array {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  if (!Number.isFinite(norm) || norm === 0) {
    throw new FaceGateError('INTERNAL', `embedding has norm ${norm}; the model output is unusable`);
  }
  for (let i = 0; i < vector.length; i += 1) vector[i] = vector[i]! / norm;
  return vector;
}

/** Face embedder over one onnxruntime session; batches when the model takes a batch axis. */
export class Embedder {
  readonly #model: LoadedModel;
  readonly #dim: number;
  readonly #maxBatch: number;

  constructor(model: LoadedModel, maxBatch = 16) {
    if (model.entry.role !== 'embedder' || !model.entry.embeddingDim) {
      throw new FaceGateError('MODEL_MISMATCH', `model '${model.entry.name}' is not an embedder`);
    }
    this.#model = model;
    this.#dim = model.entry.embeddingDim;
    this.#maxBatch = model.entry.batch === 'dynamic' ? maxBatch : (model.entry.batch ?? 1);
  }

  get modelId(): string {
    return this.#model.entry.name;
  }

  get dim(): number {
    return this.#dim;
  }

  get model(): LoadedModel {
    return this.#model;
  }

  /** Embeds aligned crops, returning one L2-normalised vector per crop, in order. */
  async embed(crops: readonly Uint8Array[]): Promise<FaceEmbedding[]> {
    const results: FaceEmbedding[] = [];
    for (let start = 0; start < crops.length; start += this.#maxBatch) {
      const batch = crops.slice(start, start + this.#maxBatch);
      const vectors = await this.runBatch(batch.map((crop) => this.preprocess(crop)));
      for (const vector of vectors)
        results.push({ modelId: this.modelId, vector: l2Normalize(vector) });
    }
    return results;
  }

  preprocess(crop: Uint8Array): Float32Array {
    return toEmbedderTensor(crop, this.#model.entry.preprocessing);
  }

  /** Runs the bare model on preprocessed inputs; returns raw (unnormalised) outputs. */
  async runBatch(inputs: readonly Float32Array[]): Promise<Float32Array[]> {
    const count = inputs.length;
    const size = 3 * ALIGNED_SIZE * ALIGNED_SIZE;
    const data = count === 1 ? inputs[0]! : new Float32Array(count * size);
    if (count > 1) inputs.forEach((input, i) => data.set(input, i * size));

    const inputName = this.#model.inputNames[0]!;
    const outputName = this.#model.outputNames[0]!;
    const results = await this.#model.session.run({
      [inputName]: new ort.Tensor('float32', data, [count, 3, ALIGNED_SIZE, ALIGNED_SIZE]),
    });
    const output = expectDims(this.#model, outputName, results[outputName], [count, this.#dim]);
    const vectors: Float32Array[] = [];
    for (let i = 0; i < count; i += 1)
      vectors.push(output.slice(i * this.#dim, (i + 1) * this.#dim));
    return vectors;
  }
}
