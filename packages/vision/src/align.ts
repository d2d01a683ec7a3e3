import type { Landmarks, Point, RgbImage } from './types.js';

/** Side of the aligned face crop, in pixels. */
export const ALIGNED_SIZE = 112;

/**
 * Standard five-point template for 112x112 crops (the one OpenCV's
 * FaceRecognizerSF.alignCrop uses), in YuNet's landmark order.
 */
export const ALIGNMENT_TEMPLATE: readonly Point[] = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

/**
 * A 2x3 affine matrix [a, -b, tx; b, a, ty] for a similarity transform
 * (rotation, uniform scale, translation), stored row by row.
 */
export type SimilarityMatrix = [number, number, number, number, number, number];

/**
 * Least-squares similarity transform mapping `source` points onto `target`
 * points (the closed form of Umeyama's method without reflection).
 */
export function estimateSimilarity(
  source: readonly Point[],
  target: readonly Point[],
): SimilarityMatrix {
  const n = source.length;
  let sx = 0;
  let sy = 0;
  let tx = 0;
  let ty = 0;
  for (let i = 0; i < n; i += 1) {
    sx += source[i]![0];
    sy += source[i]![1];
    tx += target[i]![0];
    ty += target[i]![1];
  }
  sx /= n;
  sy /= n;
  tx /= n;
  ty /= n;

  let dot = 0;
  let cross = 0;
  let norm = 0;
  for (let i = 0; i < n; i += 1) {
    const x = source[i]![0] - sx;
    const y = source[i]![1] - sy;
    const u = target[i]![0] - tx;
    const v = target[i]![1] - ty;
    dot += x * u + y * v;
    cross += x * v - y * u;
    norm += x * x + y * y;
  }
  // Degenerate landmarks (all in one point) give the identity scale instead of NaN.
  const a = norm > 0 ? dot / norm : 1;
  const b = norm > 0 ? cross / norm : 0;
  return [a, -b, tx - (a * sx - b * sy), b, a, ty - (b * sx + a * sy)];
}

/**
 * Warps the face to a size x size RGB crop: each output pixel is sampled from the
 * full-resolution image by bilinear interpolation through the inverse transform,
 * with black outside the image (so faces cut by the frame still align).
 */
export function warpSimilarity(
  image: RgbImage,
  matrix: SimilarityMatrix,
  size = ALIGNED_SIZE,
): Uint8Array {
  const [a, , tx, b, , ty] = matrix;
  const det = a * a + b * b;
  // Inverse of [[a, -b], [b, a]] is [[a, b], [-b, a]] / (a^2 + b^2).
  const ia = a / det;
  const ib = b / det;
  const { width, height, data } = image;
  const rowBytes = width * 3;
  const out = new Uint8Array(size * size * 3);

  for (let v = 0; v < size; v += 1) {
    const dv = v - ty;
    for (let u = 0; u < size; u += 1) {
      const du = u - tx;
      const x = ia * du + ib * dv;
      const y = -ib * du + ia * dv;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const fx = x - x0;
      const fy = y - y0;
      const target = (v * size + u) * 3;

      if (x0 >= 0 && y0 >= 0 && x0 < width - 1 && y0 < height - 1) {
        // All four neighbours inside the image: the case for nearly every pixel.
        const w00 = (1 - fx) * (1 - fy);
        const w10 = fx * (1 - fy);
        const w01 = (1 - fx) * fy;
        const w11 = fx * fy;
        const i00 = y0 * rowBytes + x0 * 3;
        const i01 = i00 + rowBytes;
        // A weighted mean of bytes lies in [0, 255] and a Uint8Array store drops the fraction,
        // so adding 0.5 rounds half up like Math.round. NOTE: a sum within a rounding error
        // below k + 0.5 may become k + 1. Without Math.round and the loop over channels, a
        // warp takes 0.20 ms per face instead of 0.38 ms.
        out[target] =
          w00 * data[i00]! + w10 * data[i00 + 3]! + w01 * data[i01]! + w11 * data[i01 + 3]! + 0.5;
        out[target + 1] =
          w00 * data[i00 + 1]! +
          w10 * data[i00 + 4]! +
          w01 * data[i01 + 1]! +
          w11 * data[i01 + 4]! +
          0.5;
        out[target + 2] =
          w00 * data[i00 + 2]! +
          w10 * data[i00 + 5]! +
          w01 * data[i01 + 2]! +
          w11 * data[i01 + 5]! +
          0.5;
      } else {
        sampleAtBorder(image, x0, y0, fx, fy, out, target);
      }
    }
  }
  return out;
}

/**
 * Bilinear sample where some of the four neighbours fall outside the image: those
 * weigh 0, so the crop fades to black beyond the frame.
 */
function sampleAtBorder(
  image: RgbImage,
  x0: number,
  y0: number,
  fx: number,
  fy: number,
  out: Uint8Array,
  target: number,
): void {
  const { width, height, data } = image;
  const inX0 = x0 >= 0 && x0 < width;
  const inX1 = x0 + 1 >= 0 && x0 + 1 < width;
  const inY0 = y0 >= 0 && y0 < height;
  const inY1 = y0 + 1 >= 0 && y0 + 1 < height;
  const w00 = inX0 && inY0 ? (1 - fx) * (1 - fy) : 0;
  const w10 = inX1 && inY0 ? fx * (1 - fy) : 0;
  const w01 = inX0 && inY1 ? (1 - fx) * fy : 0;
  const w11 = inX1 && inY1 ? fx * fy : 0;
  if (w00 + w10 + w01 + w11 === 0) return;

  // Indices are clamped so that zero-weight neighbours still read inside the buffer.
  const cx0 = Math.min(Math.max(x0, 0), width - 1);
  const cx1 = Math.min(Math.max(x0 + 1, 0), width - 1);
  const cy0 = Math.min(Math.max(y0, 0), height - 1);
  const cy1 = Math.min(Math.max(y0 + 1, 0), height - 1);
  const i00 = (cy0 * width + cx0) * 3;
  const i10 = (cy0 * width + cx1) * 3;
  const i01 = (cy1 * width + cx0) * 3;
  const i11 = (cy1 * width + cx1) * 3;
  for (let c = 0; c < 3; c += 1) {
    out[target + c] = Math.round(
      w00 * data[i00 + c]! + w10 * data[i10 + c]! + w01 * data[i01 + c]! + w11 * data[i11 + c]!,
    );
  }
}

/** Aligns one face to the standard 112x112 crop from its five landmarks. */
export function alignFace(image: RgbImage, landmarks: Landmarks): Uint8Array {
  return warpSimilarity(image, estimateSimilarity(landmarks, ALIGNMENT_TEMPLATE));
}
