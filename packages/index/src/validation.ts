import { FaceGateError } from '@facegate/errors';

/**
 * hnswlib-node converts every label to a uint32 (Napi `Uint32Value`), which
 * silently wraps larger numbers, so face ids above this value are rejected.
 */
export const MAX_FACE_ID = 0xffff_ffff;

/**
 * Checks a face feature and returns it scaled to unit length as float32.
 *
 * Vectors should already be L2-normalised; normalising again here keeps the inner
 * product a cosine even when a caller sends a slightly different norm.
 * Throws FaceGateError INVALID_REQUEST on a wrong length, a non-finite value or a zero vector.
 */
export function toUnitVector(vector: ArrayLike<number>, dim: number, name: string): Float32Array {
  if (vector === null || typeof vector !== 'object' || typeof vector.length !== 'number') {
    throw new FaceGateError('INVALID_REQUEST', `${name} must be an array of ${dim} numbers`);
  }
  if (vector.length !== dim) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `${name} has ${vector.length} dimensions, expected ${dim}`,
      {
        details: { dimensions: vector.length, expectedDimensions: dim },
      },
    );
  }

  let squaredNorm = 0;
  for (let i = 0; i < dim; i += 1) {
    const value = vector[i];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `${name}[${i}] is ${String(value)}; every value must be a finite number`,
        {
          details: { position: i },
        },
      );
    }
    squaredNorm += value * value;
  }
  const norm = Math.sqrt(squaredNorm);
  if (norm === 0 || !Number.isFinite(norm)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `${name} has norm ${norm}; a face feature must have a finite, non-zero norm`,
    );
  }

  const unit = new Float32Array(dim);
  for (let i = 0; i < dim; i += 1) unit[i] = vector[i]! / norm;
  return unit;
}

/** Throws FaceGateError INVALID_REQUEST unless `faceId` fits an HNSW label. */
export function assertFaceId(faceId: number): void {
  if (!Number.isInteger(faceId) || faceId < 0 || faceId > MAX_FACE_ID) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `faceId ${String(faceId)} is invalid; it must be an integer from 0 to ${MAX_FACE_ID}`,
      { details: { faceId: String(faceId) } },
    );
  }
}

/** Throws FaceGateError INVALID_REQUEST unless `visitorId` is a non-empty string. */
export function assertVisitorId(visitorId: string): void {
  if (typeof visitorId !== 'string' || visitorId.length === 0) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `visitorId ${String(visitorId)} is invalid; it must be a non-empty string`,
    );
  }
}

/** Throws FaceGateError `code` unless `value` is an integer in [min, max]. */
export function assertIntegerInRange(
  code: 'INVALID_REQUEST' | 'CONFIG_INVALID',
  name: string,
  value: number,
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
    throw new FaceGateError(code, `${name} is ${String(value)}; it must be an integer ${range}`);
  }
}
