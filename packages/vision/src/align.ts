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
  const out = new Uint8Array(size * size * 3);

  for (let v = 0; v < size; v += 1) {
    for (let u = 0; u < size; u += 1) {
      const du = u - tx;
      const dv = v - ty;
      const x = ia * du + ib * dv;
      const y = -ib * du + ia * dv;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const fx = x - x0;
      const fy = y - y0;
      const target = (v * size + u) * 3;
      for (let c = 0; c < 3; c += 1) {
        let value = 0;
        for (let dy = 0; dy <= 1; dy += 1) {
          const yy = y0 + dy;
          if (yy < 0 || yy >= height) continue;
          const wy = dy === 0 ? 1 - fy : fy;
          for (let dx = 0; dx <= 1; dx += 1) {
            const xx = x0 + dx;
            if (xx < 0 || xx >= width) continue;
            const wx = dx === 0 ? 1 - fx : fx;
            value += wx * wy * data[(yy * width + xx) * 3 + c]!;
          }
        }
        out[target + c] = Math.round(value);
      }
    }
  }
  return out;
}

/** Aligns one face to the standard 112x112 crop from its five landmarks. */
export function alignFace(image: RgbImage, landmarks: Landmarks): Uint8Array {
  return warpSimilarity(image, estimateSimilarity(landmarks, ALIGNMENT_TEMPLATE));
}
