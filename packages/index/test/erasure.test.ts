import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { findVector } from '@facegate/testing';

import { FaceIndex } from '../src/index.js';
import {
  DIM,
  MODEL_ID,
  createRandom,
  randomUnitVector,
  visitorUuid,
  withTemporaryDirectory,
} from './gallery.js';

/** Reads every file the index saved, concatenated. */
async function savedBytes(dir: string): Promise<Buffer> {
  const names = await readdir(dir);
  return Buffer.concat(await Promise.all(names.map((name) => readFile(join(dir, name)))));
}

function buildIndex(
  random: () => number,
  faces: number,
): { index: FaceIndex; vectors: number[][] } {
  const index = new FaceIndex({ modelId: MODEL_ID, dim: DIM, exactSearchMaxFaces: 0 });
  const vectors: number[][] = [];
  for (let faceId = 1; faceId <= faces; faceId += 1) {
    const vector = randomUnitVector(random);
    vectors.push(vector);
    index.add(faceId, visitorUuid(faceId % 10), vector);
  }
  return { index, vectors };
}

test('a removed face is gone from the saved files', async () => {
  await withTemporaryDirectory(async (dir) => {
    const { index, vectors } = buildIndex(createRandom(41), 200);
    const erased = vectors[16]!;
    const kept = vectors[17]!;
    await index.save(dir);
    const before = await savedBytes(dir);

    index.remove(17);
    await index.save(dir);
    const after = await savedBytes(dir);

    // The check can fail: before the removal the file contains the vector.
    assert.notEqual(findVector(before, erased), -1);
    assert.equal(findVector(after, erased), -1);
    assert.notEqual(findVector(after, kept), -1);
  });
});

test('removal keeps search and reload working', async () => {
  await withTemporaryDirectory(async (dir) => {
    const random = createRandom(42);
    const { index, vectors } = buildIndex(random, 300);
    for (let faceId = 1; faceId <= 100; faceId += 1) index.remove(faceId);
    await index.save(dir);

    const loaded = await FaceIndex.load(dir, { modelId: MODEL_ID, dim: DIM });

    assert.ok(loaded);
    assert.equal(loaded.stats().size, 200);
    for (const faceId of [101, 150, 300]) {
      const [best] = loaded.search(vectors[faceId - 1]!, { k: 1 });
      assert.equal(best?.faceId, faceId);
    }
    assert.ok(!loaded.has(50));
    const [nearRemoved] = loaded.search(vectors[49]!, { k: 1 });
    assert.ok(nearRemoved!.faceId > 100);
  });
});

test('a removed face can be added again', () => {
  const random = createRandom(43);
  const { index } = buildIndex(random, 50);
  const replacement = randomUnitVector(random);

  index.remove(7);
  index.add(7, visitorUuid(3), replacement);

  assert.equal(index.search(replacement, { k: 1 })[0]?.faceId, 7);
});
