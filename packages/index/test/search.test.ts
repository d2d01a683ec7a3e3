import assert from 'node:assert/strict';
import { test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import { FaceIndex, hnswlibBuild } from '../src/index.js';
import type { FaceEntry, FaceIndexOptions } from '../src/index.js';
import {
  DIM,
  MODEL_ID,
  createGallery,
  createRandom,
  faceNear,
  randomUnitVector,
  visitorUuid,
} from './gallery.js';

/** Both search paths: exact brute force (any size) and HNSW (from the first face). */
const MODES = [
  { name: 'exact', exactSearchMaxFaces: Number.MAX_SAFE_INTEGER },
  { name: 'hnsw', exactSearchMaxFaces: 0 },
] as const;

function createIndex(options: Partial<FaceIndexOptions> = {}): FaceIndex {
  return new FaceIndex({ modelId: MODEL_ID, dim: DIM, ...options });
}

function addAll(index: FaceIndex, faces: Iterable<FaceEntry>): void {
  for (const face of faces) index.add(face.faceId, face.visitorId, face.vector);
}

function isInvalidRequest(error: unknown): boolean {
  return error instanceof FaceGateError && error.code === 'INVALID_REQUEST';
}

test('exact and hnsw agree on nearest visitor', async () => {
  const gallery = createGallery(1, 1000, 3);
  const exact = await FaceIndex.build(
    { modelId: MODEL_ID, exactSearchMaxFaces: Number.MAX_SAFE_INTEGER },
    gallery.faces,
  );
  const hnsw = await FaceIndex.build({ modelId: MODEL_ID, exactSearchMaxFaces: 0 }, gallery.faces);
  const random = createRandom(2);
  const visitorIds = [...gallery.centres.keys()];

  for (let q = 0; q < 200; q += 1) {
    const visitorId = visitorIds[Math.floor(random() * visitorIds.length)]!;
    const query = faceNear(gallery.centres.get(visitorId)!, random);

    const [exactBest] = exact.search(query);
    const [hnswBest] = hnsw.search(query);

    assert.equal(exactBest?.visitorId, visitorId, `query ${q}: exact search missed the visitor`);
    assert.equal(hnswBest?.visitorId, exactBest.visitorId, `query ${q}: hnsw and exact disagree`);
    assert.equal(
      hnswBest.faceId,
      exactBest.faceId,
      `query ${q}: hnsw and exact chose different faces`,
    );
    assert.ok(
      Math.abs(hnswBest.similarity - exactBest.similarity) < 1e-5,
      `query ${q}: similarities differ`,
    );
  }
});

test('search on empty index returns nothing', () => {
  const index = createIndex();

  assert.deepEqual(index.search(randomUnitVector(createRandom(3)), { k: 5 }), []);
});

for (const mode of MODES) {
  test(`${mode.name} search returns distinct visitors`, () => {
    const random = createRandom(4);
    const index = createIndex({ exactSearchMaxFaces: mode.exactSearchMaxFaces });
    const centre = randomUnitVector(random);
    const closeVisitor = visitorUuid(999);
    const closeFaces = Array.from({ length: 5 }, (_, i) => ({
      faceId: 100 + i,
      visitorId: closeVisitor,
      vector: faceNear(centre, random, 0.1),
    }));
    addAll(index, closeFaces);
    for (let v = 0; v < 20; v += 1)
      index.add(200 + v, visitorUuid(v), faceNear(centre, random, 1.5));

    const results = index.search(centre, { k: 5 });

    assert.equal(results.length, 5);
    assert.equal(new Set(results.map((result) => result.visitorId)).size, 5);
    assert.equal(results.filter((result) => result.visitorId === closeVisitor).length, 1);
    const bestCloseFace = closeFaces
      .map((face) => ({
        faceId: face.faceId,
        dot: face.vector.reduce((sum, value, i) => sum + value * centre[i]!, 0),
      }))
      .sort((a, b) => b.dot - a.dot)[0]!;
    assert.equal(results[0]!.visitorId, closeVisitor);
    assert.equal(results[0]!.faceId, bestCloseFace.faceId);
    for (let i = 1; i < results.length; i += 1)
      assert.ok(results[i - 1]!.similarity >= results[i]!.similarity);
  });

  test(`${mode.name} search clamps k to live faces`, () => {
    const gallery = createGallery(5, 3, 1);
    const index = createIndex({ exactSearchMaxFaces: mode.exactSearchMaxFaces });
    addAll(index, gallery.faces);

    const results = index.search(gallery.faces[0]!.vector, { k: 50 });

    assert.equal(results.length, 3);
    assert.equal(results[0]!.faceId, gallery.faces[0]!.faceId);
  });

  test(`${mode.name} search skips removed faces`, () => {
    const gallery = createGallery(6, 50, 2);
    const index = createIndex({ exactSearchMaxFaces: mode.exactSearchMaxFaces });
    addAll(index, gallery.faces);
    const removed = gallery.faces[10]!;
    const sibling = gallery.faces[11]!;

    const wasRemoved = index.remove(removed.faceId);
    const afterFaceRemoval = index.search(removed.vector, { k: 50 });
    const removedFaces = index.removeVisitor(removed.visitorId);
    const afterVisitorRemoval = index.search(removed.vector, { k: 50 });

    assert.equal(wasRemoved, true);
    assert.equal(afterFaceRemoval.length, 50);
    assert.ok(afterFaceRemoval.every((result) => result.faceId !== removed.faceId));
    assert.equal(afterFaceRemoval[0]!.faceId, sibling.faceId);
    assert.equal(removedFaces, 1);
    assert.equal(afterVisitorRemoval.length, 49);
    assert.ok(afterVisitorRemoval.every((result) => result.visitorId !== removed.visitorId));
    assert.equal(index.stats().size, 98);
  });

  test(`${mode.name} re-added face is found again`, () => {
    const gallery = createGallery(7, 20, 1);
    const index = createIndex({ exactSearchMaxFaces: mode.exactSearchMaxFaces });
    addAll(index, gallery.faces);
    const face = gallery.faces[3]!;
    const newVector = randomUnitVector(createRandom(8));
    index.remove(face.faceId);

    index.add(face.faceId, face.visitorId, newVector);
    const [best] = index.search(newVector);

    assert.equal(best?.faceId, face.faceId);
    assert.ok(best.similarity > 0.9999);
    assert.equal(index.stats().size, 20);
    assert.equal(index.stats().deletedCount, 0);
  });
}

test('re-added face survives reuse of its slot', () => {
  const random = createRandom(9);
  const index = createIndex({ exactSearchMaxFaces: 0 });
  const [a, b, c] = [randomUnitVector(random), randomUnitVector(random), randomUnitVector(random)];
  index.add(1, visitorUuid(1), a);
  index.add(2, visitorUuid(2), b);
  index.remove(1);
  index.add(3, visitorUuid(3), c);

  index.add(1, visitorUuid(1), a);

  assert.deepEqual(
    [a, b, c].map((vector) => index.search(vector)[0]?.faceId),
    [1, 2, 3],
  );
  assert.equal(index.stats().size, 3);
  assert.equal(index.stats().deletedCount, 0);
});

test('revived face keeps its own slot', () => {
  const gallery = createGallery(24, 6, 1);
  const index = createIndex({ exactSearchMaxFaces: 0 });
  addAll(index, gallery.faces);
  for (const face of gallery.faces.slice(0, 5)) index.remove(face.faceId);
  const revived = gallery.faces[2]!;
  const random = createRandom(25);

  index.add(revived.faceId, revived.visitorId, revived.vector);
  for (let i = 0; i < 4; i += 1) index.add(100 + i, visitorUuid(100 + i), randomUnitVector(random));

  assert.equal(index.search(revived.vector)[0]?.faceId, revived.faceId);
  assert.equal(index.stats().deletedCount, 0);
  assert.equal(index.remove(revived.faceId), true);
  assert.ok(
    index.search(revived.vector, { k: 10 }).every((result) => result.faceId !== revived.faceId),
  );
});

test('hnsw search falls back to exact', () => {
  // A sparse graph with most nodes deleted leaves some live faces unreachable by HNSW.
  const gallery = createGallery(26, 400, 1);
  const index = createIndex({ M: 2, efConstruction: 4, ef: 1, exactSearchMaxFaces: 0 });
  addAll(index, gallery.faces);
  const random = createRandom(27);
  for (const face of gallery.faces) if (random() < 0.9) index.remove(face.faceId);
  const liveCount = index.stats().size;

  const results = index.search(randomUnitVector(random), { k: liveCount });

  assert.equal(results.length, liveCount);
  assert.ok(results.every((result) => index.has(result.faceId)));
});

test('remove of unknown face returns false', () => {
  const index = createIndex();
  index.add(1, visitorUuid(1), randomUnitVector(createRandom(10)));

  assert.equal(index.remove(2), false);
  assert.equal(index.remove(1), true);
  assert.equal(index.remove(1), false);
  assert.equal(index.removeVisitor(visitorUuid(5)), 0);
});

test('re-adding same vector changes nothing', () => {
  const vector = randomUnitVector(createRandom(11));
  const index = createIndex();
  index.add(1, visitorUuid(1), vector);
  const before = index.stats();

  index.add(1, visitorUuid(1), vector);

  assert.deepEqual(index.stats(), before);
  assert.equal(index.search(vector)[0]?.faceId, 1);
});

for (const mode of MODES) {
  test(`${mode.name} re-adding new vector replaces old`, () => {
    const random = createRandom(12);
    const index = createIndex({ exactSearchMaxFaces: mode.exactSearchMaxFaces });
    const [oldVector, newVector, other] = [
      randomUnitVector(random),
      randomUnitVector(random),
      randomUnitVector(random),
    ];
    index.add(1, visitorUuid(1), oldVector);
    index.add(2, visitorUuid(2), other);

    index.add(1, visitorUuid(1), newVector);

    assert.equal(index.search(newVector)[0]?.faceId, 1);
    assert.ok(index.search(newVector)[0]!.similarity > 0.9999);
    assert.ok(index.search(oldVector, { k: 2 }).every((result) => result.similarity < 0.5));
    assert.equal(index.stats().size, 2);
  });
}

test('re-adding face under another visitor moves it', () => {
  const vector = randomUnitVector(createRandom(13));
  const index = createIndex();
  index.add(1, visitorUuid(1), vector);

  index.add(1, visitorUuid(2), vector);

  assert.equal(index.search(vector)[0]?.visitorId, visitorUuid(2));
  assert.equal(index.stats().visitors, 1);
  assert.equal(index.removeVisitor(visitorUuid(1)), 0);
});

test('capacity doubles past initialCapacity', () => {
  const gallery = createGallery(14, 100, 1);
  const index = createIndex({ initialCapacity: 16, exactSearchMaxFaces: 0 });

  addAll(index, gallery.faces);

  assert.equal(index.stats().capacity, 128);
  assert.equal(index.stats().size, 100);
  for (const face of gallery.faces) assert.equal(index.search(face.vector)[0]?.faceId, face.faceId);
});

test('deleted slots are reused before growing', () => {
  const gallery = createGallery(15, 16, 1);
  const index = createIndex({ initialCapacity: 16 });
  addAll(index, gallery.faces);
  for (const face of gallery.faces.slice(0, 4)) index.remove(face.faceId);
  assert.equal(index.stats().deletedCount, 4);
  const random = createRandom(16);

  for (let i = 0; i < 4; i += 1)
    index.add(1000 + i, visitorUuid(1000 + i), randomUnitVector(random));

  assert.equal(index.stats().capacity, 16);
  assert.equal(index.stats().deletedCount, 0);
  assert.equal(index.stats().size, 16);
});

test('add rejects invalid vectors', () => {
  const index = createIndex();
  const valid = randomUnitVector(createRandom(17));
  const withValue = (position: number, value: number): number[] =>
    valid.map((v, i) => (i === position ? value : v));
  const cases: Array<[string, ArrayLike<number>]> = [
    ['too short', valid.slice(1)],
    ['too long', [...valid, 0]],
    ['NaN', withValue(5, Number.NaN)],
    ['Infinity', withValue(0, Number.POSITIVE_INFINITY)],
    ['zero vector', new Array<number>(DIM).fill(0)],
  ];

  for (const [name, vector] of cases) {
    assert.throws(() => index.add(1, visitorUuid(1), vector), isInvalidRequest, name);
  }
  assert.equal(index.stats().size, 0);
});

test('add accepts a Float32Array', () => {
  const index = createIndex();
  const vector = Float32Array.from(randomUnitVector(createRandom(18)));

  index.add(1, visitorUuid(1), vector);

  assert.equal(index.search(vector)[0]?.faceId, 1);
});

test('add rejects invalid ids', () => {
  const index = createIndex();
  const vector = randomUnitVector(createRandom(19));

  for (const faceId of [-1, 1.5, 2 ** 32, Number.NaN]) {
    assert.throws(
      () => index.add(faceId, visitorUuid(1), vector),
      isInvalidRequest,
      `faceId ${faceId}`,
    );
  }
  assert.throws(() => index.add(1, '', vector), isInvalidRequest);
  assert.equal(index.stats().size, 0);
});

test('search rejects invalid queries', () => {
  const index = createIndex();
  const vector = randomUnitVector(createRandom(20));
  index.add(1, visitorUuid(1), vector);

  assert.throws(() => index.search(vector.slice(2)), isInvalidRequest);
  assert.throws(() => index.search(vector.map(() => Number.NaN)), isInvalidRequest);
  assert.throws(() => index.search(vector, { k: 0 }), isInvalidRequest);
  assert.throws(() => index.search(vector, { k: 1.5 }), isInvalidRequest);
  assert.throws(() => index.search(vector, { ef: 0 }), isInvalidRequest);
  assert.throws(
    () => index.search(vector, { scoring: 'mean' as unknown as 'fused' }),
    isInvalidRequest,
  );
});

/** Returns a unit vector from weights on basis axes, { axis: weight }, already of norm 1. */
function along(weights: Record<number, number>): number[] {
  const vector = new Array<number>(DIM).fill(0);
  for (const [axis, weight] of Object.entries(weights)) vector[Number(axis)] = weight;
  return vector;
}

/**
 * Visitor A has one face at 0.8 from the query and two unrelated ones. Visitor B has three
 * faces at 0.7 that lean away from the query in different directions, so their mean is close.
 * A's template is at 0.8 / sqrt(3) = 0.462, and B's at 2.1 / sqrt(4.41 + 3 * 0.51) = 0.862.
 */
function templateGallery(exactSearchMaxFaces: number): { index: FaceIndex; query: number[] } {
  const index = createIndex({ exactSearchMaxFaces });
  const side = Math.sqrt(1 - 0.49);
  index.add(1, visitorUuid(1), along({ 0: 0.8, 1: 0.6 }));
  index.add(2, visitorUuid(1), along({ 2: 1 }));
  index.add(3, visitorUuid(1), along({ 3: 1 }));
  for (const [faceId, axis] of [
    [4, 4],
    [5, 5],
    [6, 6],
  ] as const)
    index.add(faceId, visitorUuid(2), along({ 0: 0.7, [axis]: side }));
  const random = createRandom(30);
  for (let v = 0; v < 200; v += 1)
    index.add(100 + v, visitorUuid(100 + v), randomUnitVector(random));
  return { index, query: along({ 0: 1 }) };
}

for (const mode of MODES) {
  test(`${mode.name} fused scoring ranks visitors by their template`, () => {
    const { index, query } = templateGallery(mode.exactSearchMaxFaces);

    const best = index.search(query, { k: 2, scoring: 'best' });
    const fused = index.search(query, { k: 2, scoring: 'fused' });

    assert.deepEqual(
      best.map((candidate) => [candidate.visitorId, candidate.faceId]),
      [
        [visitorUuid(1), 1],
        [visitorUuid(2), best[1]!.faceId],
      ],
    );
    assert.ok(Math.abs(best[0]!.similarity - 0.8) < 1e-5);
    assert.deepEqual(
      fused.map((candidate) => candidate.visitorId),
      [visitorUuid(2), visitorUuid(1)],
    );
    assert.ok(Math.abs(fused[0]!.similarity - 2.1 / Math.sqrt(4.41 + 3 * 0.51)) < 1e-5);
    assert.ok(Math.abs(fused[1]!.similarity - 0.8 / Math.sqrt(3)) < 1e-5);
    // The face reported is still the visitor's face nearest to the query.
    assert.equal(fused[1]!.faceId, 1);
    assert.ok([4, 5, 6].includes(fused[0]!.faceId));
  });

  test(`${mode.name} templates follow removed and replaced faces`, () => {
    const { index, query } = templateGallery(mode.exactSearchMaxFaces);
    const top = (): [string, number] => {
      const [first] = index.search(query, { scoring: 'fused' });
      return [first!.visitorId, Math.round(first!.similarity * 1e4) / 1e4];
    };
    const steps: [string, () => unknown][] = [
      ['start', () => undefined],
      ['two of B removed', () => [index.remove(5), index.remove(6)]],
      ['two of A removed', () => [index.remove(2), index.remove(3)]],
      ['A replaced', () => index.add(1, visitorUuid(1), along({ 0: 0.6, 1: 0.8 }))],
      ['B removed', () => index.removeVisitor(visitorUuid(2))],
      ['A added', () => index.add(7, visitorUuid(1), along({ 0: 1 }))],
    ];

    const seen = steps.map(([name, change]) => {
      change();
      return [name, ...top()];
    });

    assert.deepEqual(seen, [
      ['start', visitorUuid(2), 0.8616],
      ['two of B removed', visitorUuid(2), 0.7],
      ['two of A removed', visitorUuid(1), 0.8],
      ['A replaced', visitorUuid(2), 0.7],
      ['B removed', visitorUuid(1), 0.6],
      // (0.6 + 1, 0.8) / |(1.6, 0.8)|
      ['A added', visitorUuid(1), 0.8944],
    ]);
  });
}

test('constructor rejects invalid options', () => {
  const invalid: Array<Partial<FaceIndexOptions>> = [
    { modelId: '' },
    { dim: 0 },
    { M: 1 },
    { ef: 0 },
    { initialCapacity: 0 },
    { exactSearchMaxFaces: -1 },
  ];

  for (const options of invalid) {
    assert.throws(
      () => createIndex(options),
      (error) => error instanceof FaceGateError && error.code === 'CONFIG_INVALID',
      JSON.stringify(options),
    );
  }
});

test('per-call ef leaves the default in place', () => {
  const gallery = createGallery(21, 200, 1);
  const index = createIndex({ exactSearchMaxFaces: 0, ef: 50 });
  addAll(index, gallery.faces);
  const query = gallery.faces[42]!.vector;

  const wide = index.search(query, { ef: 400 });
  const narrow = index.search(query);

  assert.equal(wide[0]?.faceId, 42 + 1);
  assert.equal(narrow[0]?.faceId, 42 + 1);
  assert.equal(index.stats().ef, 50);
});

test('stats report counts and settings', () => {
  const gallery = createGallery(22, 4, 3);
  const index = createIndex({ M: 8, efConstruction: 100, ef: 64, initialCapacity: 32 });
  addAll(index, gallery.faces);
  index.remove(gallery.faces[0]!.faceId);
  index.setLastSeq(41);

  const stats = index.stats();

  assert.deepEqual(stats, {
    size: 11,
    visitors: 4,
    capacity: 32,
    deletedCount: 1,
    M: 8,
    efConstruction: 100,
    ef: 64,
    modelId: MODEL_ID,
    dim: DIM,
    lastPersistedAt: null,
    lastSeq: 41,
    hnswlibBuild,
  });
});

test('setLastSeq rejects negative numbers', () => {
  const index = createIndex();

  assert.throws(() => index.setLastSeq(-1), isInvalidRequest);
  assert.throws(() => index.setLastSeq(0.5), isInvalidRequest);
  assert.equal(index.lastSeq, 0);
});

test('build reads sync and async iterables', async () => {
  const gallery = createGallery(23, 10, 2);
  async function* stream(): AsyncGenerator<FaceEntry> {
    for (const face of gallery.faces) {
      await Promise.resolve();
      yield face;
    }
  }

  const fromArray = await FaceIndex.build({ modelId: MODEL_ID }, gallery.faces);
  const fromStream = await FaceIndex.build({ modelId: MODEL_ID }, stream());

  assert.equal(fromArray.stats().size, 20);
  assert.equal(fromStream.stats().size, 20);
  assert.equal(fromStream.stats().visitors, 10);
  assert.deepEqual(
    fromStream.search(gallery.faces[5]!.vector, { k: 3 }),
    fromArray.search(gallery.faces[5]!.vector, { k: 3 }),
  );
});
