import { FaceGateError } from '@facegate/errors';

/** Bytes per stored value: embeddings are float32, little-endian, in the `bytea` column. */
export const BYTES_PER_VALUE = 4;

/** Largest dimension the `smallint` column `faces.dim` can hold. */
export const MAX_EMBEDDING_DIM = 32767;

/**
 * Encodes an embedding as float32 little-endian bytes, whatever the host byte order.
 * Throws FaceGateError 'INVALID_REQUEST' for an empty, oversized or non-finite embedding,
 * and 'MODEL_MISMATCH' when `expectedDim` is given and differs from its length.
 */
export function encodeEmbedding(embedding: Float32Array, expectedDim?: number): Buffer {
  if (!(embedding instanceof Float32Array)) {
    throw new FaceGateError('INVALID_REQUEST', 'embedding must be a Float32Array');
  }
  if (embedding.length === 0 || embedding.length > MAX_EMBEDDING_DIM) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `embedding has ${embedding.length} values; expected 1 to ${MAX_EMBEDDING_DIM}`,
    );
  }
  if (expectedDim !== undefined && embedding.length !== expectedDim) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `embedding has ${embedding.length} values, expected ${expectedDim}`,
      { details: { dim: embedding.length, expectedDim } },
    );
  }

  const bytes = Buffer.alloc(embedding.length * BYTES_PER_VALUE);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < embedding.length; i++) {
    const value = embedding[i]!;
    if (!Number.isFinite(value)) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `embedding value at index ${i} is ${value}; every value must be finite`,
      );
    }
    view.setFloat32(i * BYTES_PER_VALUE, value, true);
  }
  return bytes;
}

/**
 * Decodes float32 little-endian bytes into a new Float32Array. The values are copied, so
 * a Buffer at an odd offset inside a larger allocation is safe to pass.
 * Throws FaceGateError 'INTERNAL' when the byte length is not `dim * 4`: stored rows are
 * checked by the table, so a mismatch means a bug or a wrong `dim`.
 */
export function decodeEmbedding(bytes: Uint8Array, dim: number): Float32Array {
  if (!Number.isInteger(dim) || dim < 1) {
    throw new FaceGateError(
      'INTERNAL',
      `embedding dimension is ${dim}; expected a positive integer`,
    );
  }
  if (bytes.byteLength !== dim * BYTES_PER_VALUE) {
    throw new FaceGateError(
      'INTERNAL',
      `embedding has ${bytes.byteLength} bytes, expected ${dim * BYTES_PER_VALUE} for dimension ${dim}`,
      { details: { byteLength: bytes.byteLength, dim } },
    );
  }

  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const embedding = new Float32Array(dim);
  for (let i = 0; i < dim; i++) {
    embedding[i] = view.getFloat32(i * BYTES_PER_VALUE, true);
  }
  return embedding;
}
