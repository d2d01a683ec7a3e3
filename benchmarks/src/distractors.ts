/**
 * Synthetic face embeddings that stand in for people outside the test photos,
 * so a gallery can grow to 100,000 identities. Uniform random unit vectors would
 * be far easier to reject than real faces, because their similarities to a
 * probe cluster tightly around 0. The generators here copy the statistics of
 * real embeddings of people who are neither enrolled nor used as strangers:
 *
 * - `gaussian`: an identity centre c ~ N(mean, between-person covariance), each
 *   face normalise(c + w) with w ~ N(0, within-person covariance). One face of
 *   an identity then has the mean and total covariance of real single photos.
 * - `mixture`: a random convex combination of three real embeddings plus
 *   Gaussian noise, normalised; one face per identity.
 *
 * Neither reproduces the upper tail of real stranger similarities exactly (see
 * the comparison table the benchmarks print), so both scripts report it.
 */
import { normalise } from './identification.js';
import type { Random } from './random.js';

export type DistractorKind = 'gaussian' | 'mixture';

/**
 * Noise of the mixture generator, as a multiple of the standard deviation of the
 * real embeddings. Of 0.25, 0.5, 0.75 and 1, this value gave the heaviest tail of
 * similarities to the LFW probes. In two draws, 0.25% to 0.28% of pairs were at or
 * above 0.30, against 0.32% for real strangers and 0.19% to 0.23% for the other values.
 */
export const MIXTURE_NOISE_SCALE = 0.25;

/** Mean vector and covariance matrix (row-major dim x dim) of a set of vectors. */
export interface Moments {
  mean: Float64Array;
  covariance: Float64Array;
}

export function meanAndCovariance(vectors: readonly Float32Array[], dim: number): Moments {
  if (vectors.length < 2) throw new RangeError('a covariance needs at least two vectors');
  const mean = new Float64Array(dim);
  for (const vector of vectors) for (let i = 0; i < dim; i += 1) mean[i]! += vector[i]!;
  for (let i = 0; i < dim; i += 1) mean[i]! /= vectors.length;

  const covariance = new Float64Array(dim * dim);
  const deviation = new Float64Array(dim);
  for (const vector of vectors) {
    for (let i = 0; i < dim; i += 1) deviation[i] = vector[i]! - mean[i]!;
    addOuterProduct(covariance, deviation, dim);
  }
  for (let i = 0; i < covariance.length; i += 1) covariance[i]! /= vectors.length - 1;
  return { mean, covariance };
}

/**
 * Pooled within-group covariance: deviations of each vector from its group's mean,
 * over the degrees of freedom (vectors minus groups). Groups of one vector add nothing.
 */
export function pooledWithinCovariance(
  groups: readonly (readonly Float32Array[])[],
  dim: number,
): Float64Array {
  const covariance = new Float64Array(dim * dim);
  const deviation = new Float64Array(dim);
  let degreesOfFreedom = 0;
  for (const group of groups) {
    if (group.length < 2) continue;
    const mean = new Float64Array(dim);
    for (const vector of group) for (let i = 0; i < dim; i += 1) mean[i]! += vector[i]!;
    for (let i = 0; i < dim; i += 1) mean[i]! /= group.length;
    for (const vector of group) {
      for (let i = 0; i < dim; i += 1) deviation[i] = vector[i]! - mean[i]!;
      addOuterProduct(covariance, deviation, dim);
    }
    degreesOfFreedom += group.length - 1;
  }
  if (degreesOfFreedom === 0) throw new RangeError('no group has two or more vectors');
  for (let i = 0; i < covariance.length; i += 1) covariance[i]! /= degreesOfFreedom;
  return covariance;
}

function addOuterProduct(matrix: Float64Array, vector: Float64Array, dim: number): void {
  for (let i = 0; i < dim; i += 1) {
    const vi = vector[i]!;
    for (let j = 0; j < dim; j += 1) matrix[i * dim + j]! += vi * vector[j]!;
  }
}

/**
 * Eigendecomposition of a symmetric matrix by cyclic Jacobi rotations.
 * Returns the eigenvalues and the eigenvectors as columns of a row-major
 * matrix: component i of eigenvector j is `vectors[i * n + j]`.
 */
export function symmetricEigen(
  matrix: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  if (matrix.length !== n * n)
    throw new RangeError(`matrix has ${matrix.length} entries, expected ${n * n}`);
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i += 1) v[i * n + i] = 1;

  let scale = 0;
  for (const entry of a) scale += entry * entry;
  for (let sweep = 0; sweep < 100; sweep += 1) {
    let offDiagonal = 0;
    for (let p = 0; p < n; p += 1)
      for (let q = p + 1; q < n; q += 1) offDiagonal += a[p * n + q]! ** 2;
    if (offDiagonal <= 1e-24 * scale) break;

    for (let p = 0; p < n; p += 1) {
      for (let q = p + 1; q < n; q += 1) {
        const apq = a[p * n + q]!;
        if (apq === 0) continue;
        // t = tan(angle) of the rotation that zeroes a[p][q], the smaller root of t^2 + 2 theta t - 1 = 0 for stability.
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        rotate(a, n, p, q, c, s);
        rotateColumns(v, n, p, q, c, s);
      }
    }
  }

  const values = new Float64Array(n);
  for (let i = 0; i < n; i += 1) values[i] = a[i * n + i]!;
  return { values, vectors: v };
}

/** a <- J^T a J for the Jacobi rotation J in the (p, q) plane. */
function rotate(a: Float64Array, n: number, p: number, q: number, c: number, s: number): void {
  rotateColumns(a, n, p, q, c, s);
  for (let k = 0; k < n; k += 1) {
    const apk = a[p * n + k]!;
    const aqk = a[q * n + k]!;
    a[p * n + k] = c * apk - s * aqk;
    a[q * n + k] = s * apk + c * aqk;
  }
}

function rotateColumns(
  m: Float64Array,
  n: number,
  p: number,
  q: number,
  c: number,
  s: number,
): void {
  for (let k = 0; k < n; k += 1) {
    const mkp = m[k * n + p]!;
    const mkq = m[k * n + q]!;
    m[k * n + p] = c * mkp - s * mkq;
    m[k * n + q] = s * mkp + c * mkq;
  }
}

/**
 * Draws from N(mean, covariance) as mean + V sqrt(max(L, 0)) z, with V L V^T the
 * eigendecomposition. Negative eigenvalues (a difference of two estimated
 * covariances can have some) are clipped to 0: the nearest covariance that is
 * positive semidefinite.
 */
export class GaussianSampler {
  readonly dim: number;
  /** Magnitude of the negative eigenvalues clipped to 0, over the sum of the kept eigenvalues. */
  readonly clippedVarianceShare: number;
  private readonly mean: Float64Array;
  private readonly factor: Float64Array;
  private readonly z: Float64Array;

  constructor(mean: Float64Array, covariance: Float64Array) {
    this.dim = mean.length;
    this.mean = mean;
    const { values, vectors } = symmetricEigen(covariance, this.dim);
    this.factor = new Float64Array(this.dim * this.dim);
    let clipped = 0;
    let kept = 0;
    for (let j = 0; j < this.dim; j += 1) {
      const value = values[j]!;
      if (value < 0) clipped -= value;
      else kept += value;
      const scale = Math.sqrt(Math.max(0, value));
      for (let i = 0; i < this.dim; i += 1)
        this.factor[i * this.dim + j] = vectors[i * this.dim + j]! * scale;
    }
    this.clippedVarianceShare = kept === 0 ? 0 : clipped / kept;
    this.z = new Float64Array(this.dim);
  }

  /** Writes one draw into `out` (length dim) and returns it. */
  sample(random: Random, out: Float64Array = new Float64Array(this.dim)): Float64Array {
    for (let j = 0; j < this.dim; j += 1) this.z[j] = random.normal();
    for (let i = 0; i < this.dim; i += 1) {
      let value = this.mean[i]!;
      const row = i * this.dim;
      for (let j = 0; j < this.dim; j += 1) value += this.factor[row + j]! * this.z[j]!;
      out[i] = value;
    }
    return out;
  }
}

/** The fitted generator of Gaussian distractor identities. */
export interface GaussianIdentityModel {
  dim: number;
  identity: GaussianSampler;
  withinIdentity: GaussianSampler;
  /** Trace of the total covariance (single photos) and of the within-person part. */
  totalVariance: number;
  withinVariance: number;
}

/**
 * Fits the Gaussian identity model: mean and total covariance from one photo
 * each of many people (`singlePhotos`), within-person covariance from people
 * with several photos (`photoGroups`), between-person covariance = total - within.
 */
export function fitGaussianIdentityModel(
  singlePhotos: readonly Float32Array[],
  photoGroups: readonly (readonly Float32Array[])[],
  dim: number,
): GaussianIdentityModel {
  const total = meanAndCovariance(singlePhotos, dim);
  const within = pooledWithinCovariance(photoGroups, dim);
  const between = total.covariance.map((value, i) => value - within[i]!);
  return {
    dim,
    identity: new GaussianSampler(total.mean, between),
    withinIdentity: new GaussianSampler(new Float64Array(dim), within),
    totalVariance: trace(total.covariance, dim),
    withinVariance: trace(within, dim),
  };
}

function trace(matrix: Float64Array, dim: number): number {
  let sum = 0;
  for (let i = 0; i < dim; i += 1) sum += matrix[i * dim + i]!;
  return sum;
}

/**
 * Draws `identityCount` Gaussian identities of `facesPerIdentity` unit faces each,
 * packed identity by identity: rows [k * facesPerIdentity, (k + 1) * facesPerIdentity) are identity k.
 */
export function sampleGaussianIdentities(
  model: GaussianIdentityModel,
  identityCount: number,
  facesPerIdentity: number,
  random: Random,
): Float32Array {
  const { dim } = model;
  const packed = new Float32Array(identityCount * facesPerIdentity * dim);
  const centre = new Float64Array(dim);
  const noise = new Float64Array(dim);
  const face = new Float64Array(dim);
  for (let identity = 0; identity < identityCount; identity += 1) {
    model.identity.sample(random, centre);
    for (let k = 0; k < facesPerIdentity; k += 1) {
      model.withinIdentity.sample(random, noise);
      for (let i = 0; i < dim; i += 1) face[i] = centre[i]! + noise[i]!;
      packed.set(normalise(face), (identity * facesPerIdentity + k) * dim);
    }
  }
  return packed;
}

/**
 * Draws `count` unit vectors, each a convex combination of three random `bases`
 * (weights uniform on the simplex) plus N(0, noiseScale^2 * covariance of the bases).
 */
export function sampleMixtures(
  bases: readonly Float32Array[],
  count: number,
  noiseScale: number,
  random: Random,
): Float32Array {
  const dim = bases[0]!.length;
  const { covariance } = meanAndCovariance(bases, dim);
  const noise = new GaussianSampler(
    new Float64Array(dim),
    covariance.map((value) => value * noiseScale ** 2),
  );
  const packed = new Float32Array(count * dim);
  const mixed = new Float64Array(dim);
  const noiseDraw = new Float64Array(dim);
  for (let n = 0; n < count; n += 1) {
    // Sorted uniforms split [0, 1] into three weights uniform on the simplex.
    const cuts = [random.uniform(), random.uniform()].sort((a, b) => a - b) as [number, number];
    const weights = [cuts[0], cuts[1] - cuts[0], 1 - cuts[1]];
    noise.sample(random, noiseDraw);
    mixed.set(noiseDraw);
    for (const weight of weights) {
      const base = bases[random.integer(bases.length)]!;
      for (let i = 0; i < dim; i += 1) mixed[i]! += weight * base[i]!;
    }
    packed.set(normalise(mixed), n * dim);
  }
  return packed;
}
