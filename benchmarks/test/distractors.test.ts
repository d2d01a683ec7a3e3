import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  GaussianSampler,
  fitGaussianIdentityModel,
  meanAndCovariance,
  pooledWithinCovariance,
  sampleGaussianIdentities,
  sampleMixtures,
  symmetricEigen,
} from '../src/distractors.js';
import { createRandom } from '../src/random.js';
import { countBelow, ksDistance, quantile } from '../src/similarity-stats.js';

function close(actual: number, expected: number, tolerance: number, label: string): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${label} is ${actual}, expected ${expected} ± ${tolerance}`,
  );
}

function norm(vector: ArrayLike<number>): number {
  let squares = 0;
  for (let i = 0; i < vector.length; i += 1) squares += vector[i]! ** 2;
  return Math.sqrt(squares);
}

test('eigendecomposition rebuilds the matrix', () => {
  const n = 3;
  const matrix = Float64Array.from([4, 1, 0.5, 1, 3, 0.2, 0.5, 0.2, 1]);

  const { values, vectors } = symmetricEigen(matrix, n);

  for (let i = 0; i < n; i += 1) {
    for (let j = 0; j < n; j += 1) {
      let rebuilt = 0;
      for (let k = 0; k < n; k += 1)
        rebuilt += vectors[i * n + k]! * values[k]! * vectors[j * n + k]!;
      close(rebuilt, matrix[i * n + j]!, 1e-10, `entry (${i}, ${j})`);
    }
  }
  close(
    values.reduce((sum, value) => sum + value, 0),
    8,
    1e-10,
    'sum of eigenvalues',
  );
});

test('eigenvalues of a 2x2 matrix', () => {
  const { values } = symmetricEigen(Float64Array.from([2, 1, 1, 2]), 2);

  assert.deepEqual(
    [...values].sort((x, y) => x - y).map((value) => Number(value.toFixed(10))),
    [1, 3],
  );
});

test('sampler reproduces mean and covariance', () => {
  const mean = Float64Array.from([1, -2]);
  const covariance = Float64Array.from([2, 0.6, 0.6, 0.5]);
  const sampler = new GaussianSampler(mean, covariance);
  const random = createRandom(1);

  const draws = Array.from({ length: 50_000 }, () => Float32Array.from(sampler.sample(random)));
  const moments = meanAndCovariance(draws, 2);

  close(moments.mean[0]!, 1, 0.03, 'mean 0');
  close(moments.mean[1]!, -2, 0.03, 'mean 1');
  close(moments.covariance[0]!, 2, 0.05, 'variance 0');
  close(moments.covariance[1]!, 0.6, 0.03, 'covariance');
  close(moments.covariance[3]!, 0.5, 0.02, 'variance 1');
  assert.equal(sampler.clippedVarianceShare, 0);
});

test('sampler clips negative eigenvalues', () => {
  // Eigenvalues 3 and -1: the negative one is dropped and reported.
  const sampler = new GaussianSampler(new Float64Array(2), Float64Array.from([1, 2, 2, 1]));
  const random = createRandom(2);

  const draw = sampler.sample(random);

  close(sampler.clippedVarianceShare, 1 / 3, 1e-9, 'clipped share');
  // Only the (1, 1) direction remains, so both coordinates are equal.
  close(draw[0]!, draw[1]!, 1e-9, 'second coordinate');
});

test('pooled covariance ignores single-vector groups', () => {
  const groups = [
    [Float32Array.from([1, 0]), Float32Array.from([3, 0])],
    [Float32Array.from([0, 1]), Float32Array.from([0, 3])],
    [Float32Array.from([9, 9])],
  ];

  const covariance = pooledWithinCovariance(groups, 2);

  // Each pair deviates by ±1 on one axis: sums of squares 2 per axis over 2 degrees of freedom.
  assert.deepEqual([...covariance], [1, 0, 0, 1]);
  assert.throws(() => pooledWithinCovariance([[Float32Array.from([1, 0])]], 2), RangeError);
});

test('gaussian identities are unit vectors closer within an identity', () => {
  const random = createRandom(3);
  const dim = 8;
  const singles = Array.from({ length: 400 }, () =>
    Float32Array.from({ length: dim }, () => random.normal()),
  );
  const groups = Array.from({ length: 200 }, () => {
    const centre = Array.from({ length: dim }, () => random.normal());
    return [0, 1].map(() => Float32Array.from(centre, (value) => value + 0.3 * random.normal()));
  });
  const model = fitGaussianIdentityModel(singles, groups, dim);

  const faces = sampleGaussianIdentities(model, 500, 2, random);

  assert.equal(faces.length, 500 * 2 * dim);
  let sameIdentity = 0;
  let otherIdentity = 0;
  for (let identity = 0; identity < 500; identity += 1) {
    const a = faces.subarray(identity * 2 * dim, (identity * 2 + 1) * dim);
    const b = faces.subarray((identity * 2 + 1) * dim, (identity * 2 + 2) * dim);
    const other = faces.subarray(
      ((identity + 1) % 500) * 2 * dim,
      ((identity + 1) % 500) * 2 * dim + dim,
    );
    close(norm(a), 1, 1e-5, `norm of identity ${identity}`);
    for (let i = 0; i < dim; i += 1) {
      sameIdentity += a[i]! * b[i]!;
      otherIdentity += a[i]! * other[i]!;
    }
  }
  assert.ok(
    sameIdentity / 500 > otherIdentity / 500 + 0.5,
    `mean similarity within ${sameIdentity / 500}, across ${otherIdentity / 500}`,
  );
});

test('mixtures are unit vectors', () => {
  const random = createRandom(4);
  const bases = Array.from({ length: 20 }, () =>
    Float32Array.from({ length: 4 }, () => random.normal()),
  );

  const mixtures = sampleMixtures(bases, 10, 0.25, random);

  assert.equal(mixtures.length, 40);
  for (let n = 0; n < 10; n += 1)
    close(norm(mixtures.subarray(n * 4, (n + 1) * 4)), 1, 1e-5, `norm ${n}`);
});

test('seeded random repeats its sequence', () => {
  const first = createRandom(42);
  const second = createRandom(42);

  const a = Array.from({ length: 5 }, () => first.normal());
  const b = Array.from({ length: 5 }, () => second.normal());

  const other = createRandom(43);
  assert.deepEqual(a, b);
  assert.notDeepEqual(
    a,
    Array.from({ length: 5 }, () => other.normal()),
  );
});

test('quantile, count and KS distance on small arrays', () => {
  const sorted = [0.1, 0.2, 0.3, 0.4];

  assert.equal(quantile(sorted, 0.5), 0.2);
  assert.equal(quantile(sorted, 1), 0.4);
  assert.equal(countBelow(sorted, 0.3), 2);
  assert.equal(ksDistance(sorted, sorted), 0);
  assert.equal(ksDistance([0, 1], [2, 3]), 1);
  assert.equal(ksDistance([1, 2], [2, 3]), 0.5);
});
