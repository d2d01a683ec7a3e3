import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import type * as Hnswlib from 'hnswlib-node';

import { hnswlib, hnswlibBuild } from '../src/hnswlib.js';
import { DIM, createRandom, randomUnitVector } from './gallery.js';

const portable = createRequire(import.meta.url)('hnswlib-node') as typeof Hnswlib;

/** Builds the same graph with one addon: one thread, so the insertion order is fixed. */
function buildGraph(binding: typeof Hnswlib, vectors: number[][]): Hnswlib.HierarchicalNSW {
  const graph = new binding.HierarchicalNSW('ip', DIM);
  graph.initIndex({ maxElements: vectors.length, m: 16, efConstruction: 100 });
  vectors.forEach((vector, label) => graph.addPoint(vector, label));
  graph.setEf(100);
  return graph;
}

test('loaded addon matches the reported build', () => {
  assert.ok(['avx2', 'portable'].includes(hnswlibBuild));
  if (hnswlibBuild === 'portable') assert.equal(hnswlib, portable);
  else assert.notEqual(hnswlib, portable);
});

test(
  'AVX2 and portable builds find the same neighbours',
  {
    skip: hnswlibBuild === 'portable' ? 'the AVX2 build is not in use on this machine' : false,
  },
  () => {
    const random = createRandom(7);
    const vectors = Array.from({ length: 2000 }, () => randomUnitVector(random));
    const fast = buildGraph(hnswlib, vectors);
    const reference = buildGraph(portable, vectors);

    for (let i = 0; i < 50; i += 1) {
      const query = randomUnitVector(random);
      const fastResult = fast.searchKnn(query, 5);
      const referenceResult = reference.searchKnn(query, 5);
      assert.equal(
        fastResult.neighbors[0],
        referenceResult.neighbors[0],
        `query ${i}: nearest neighbour differs`,
      );
      // The sums are ordered differently in AVX2 and SSE code, so the last bits may differ.
      for (let k = 0; k < 5; k += 1) {
        assert.ok(
          Math.abs(fastResult.distances[k]! - referenceResult.distances[k]!) < 1e-5,
          `query ${i}, rank ${k}`,
        );
      }
    }
  },
);
