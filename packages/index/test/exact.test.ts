import assert from 'node:assert/strict';
import { test } from 'node:test';

import { exactTopK } from '../src/index.js';
import { createRandom, randomUnitVector } from './gallery.js';

function sortedScores(
  matrix: Float32Array,
  count: number,
  dim: number,
  query: number[],
): Array<{ row: number; score: number }> {
  const all: Array<{ row: number; score: number }> = [];
  for (let row = 0; row < count; row += 1) {
    let score = 0;
    for (let i = 0; i < dim; i += 1) score += matrix[row * dim + i]! * query[i]!;
    all.push({ row, score });
  }
  return all.sort((a, b) => b.score - a.score || a.row - b.row);
}

test('exactTopK matches a full sort', () => {
  const dim = 16;
  const count = 500;
  const random = createRandom(7);
  const matrix = new Float32Array(count * dim);
  for (let row = 0; row < count; row += 1) matrix.set(randomUnitVector(random, dim), row * dim);
  const query = randomUnitVector(random, dim);

  const result = exactTopK(matrix, count, dim, query, 25);

  const expected = sortedScores(matrix, count, dim, query).slice(0, 25);
  assert.deepEqual(
    result.rows,
    expected.map((entry) => entry.row),
  );
  assert.deepEqual(
    result.scores,
    expected.map((entry) => entry.score),
  );
});

test('exactTopK ignores rows past count', () => {
  const dim = 2;
  const matrix = Float32Array.from([1, 0, 0, 1, 1, 0]);

  const result = exactTopK(matrix, 2, dim, [1, 0], 3);

  assert.deepEqual(result.rows, [0, 1]);
});

test('exactTopK clamps k to count', () => {
  const matrix = Float32Array.from([1, 0, 0, 1]);

  const result = exactTopK(matrix, 2, 2, [0, 1], 10);

  assert.deepEqual(result.rows, [1, 0]);
  assert.deepEqual(result.scores, [1, 0]);
});

test('exactTopK orders ties by row', () => {
  const matrix = Float32Array.from([0.5, 0, 1, 0, 1, 0, 0.2, 0]);

  const result = exactTopK(matrix, 4, 2, [1, 0], 2);

  assert.deepEqual(result.rows, [1, 2]);
});

test('exactTopK with k 0 returns nothing', () => {
  const result = exactTopK(Float32Array.from([1, 0]), 1, 2, [1, 0], 0);

  assert.deepEqual(result, { rows: [], scores: [] });
});

test('exactTopK rejects mismatched shapes', () => {
  const matrix = new Float32Array(8);

  assert.throws(() => exactTopK(matrix, 5, 2, [1, 0], 1), RangeError);
  assert.throws(() => exactTopK(matrix, 2, 2, [1, 0, 0], 1), RangeError);
  assert.throws(() => exactTopK(matrix, 2, 2, [1, 0], -1), RangeError);
});
