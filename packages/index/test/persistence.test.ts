import assert from 'node:assert/strict';
import { readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import hnswlib from 'hnswlib-node';

import { checkGraphFile } from '../src/graph-file.js';
import { FaceIndex } from '../src/index.js';
import {
  DIM,
  MODEL_ID,
  createGallery,
  createRandom,
  faceNear,
  randomUnitVector,
  visitorUuid,
  withTemporaryDirectory,
} from './gallery.js';

const EXPECTED = { modelId: MODEL_ID, dim: DIM };

interface ManifestFile {
  generation: number;
  index: { file: string };
  metadata: { file: string };
}

async function readManifest(dir: string): Promise<ManifestFile> {
  return JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as ManifestFile;
}

/** Loads expecting "rebuild needed" and returns the reason given. */
async function loadExpectingRebuild(dir: string): Promise<string> {
  const reasons: string[] = [];
  const loaded = await FaceIndex.load(dir, EXPECTED, {
    onRebuildNeeded: (reason) => reasons.push(reason),
  });
  assert.equal(loaded, null);
  assert.equal(reasons.length, 1);
  return reasons[0]!;
}

async function createSavedIndex(dir: string, exactSearchMaxFaces = 0): Promise<FaceIndex> {
  const gallery = createGallery(31, 300, 3);
  const index = await FaceIndex.build(
    { modelId: MODEL_ID, exactSearchMaxFaces, initialCapacity: 64 },
    gallery.faces,
  );
  index.remove(5);
  index.removeVisitor(visitorUuid(7));
  index.setLastSeq(1234);
  await index.save(dir);
  return index;
}

for (const exactSearchMaxFaces of [0, Number.MAX_SAFE_INTEGER]) {
  const mode = exactSearchMaxFaces === 0 ? 'hnsw' : 'exact';

  test(`${mode} save then load keeps results and stats`, async () => {
    await withTemporaryDirectory(async (dir) => {
      const original = await createSavedIndex(dir, exactSearchMaxFaces);
      const random = createRandom(32);
      const queries = Array.from({ length: 50 }, () =>
        faceNear(randomUnitVector(random), random, 2),
      );

      const loaded = await FaceIndex.load(dir, EXPECTED, { exactSearchMaxFaces });

      assert.ok(loaded);
      assert.deepEqual(loaded.stats(), original.stats());
      assert.equal(loaded.stats().lastSeq, 1234);
      assert.equal(loaded.stats().deletedCount, 4);
      assert.notEqual(loaded.stats().lastPersistedAt, null);
      for (const query of queries)
        assert.deepEqual(loaded.search(query, { k: 5 }), original.search(query, { k: 5 }));
    });
  });
}

test('loaded index accepts changes', async () => {
  await withTemporaryDirectory(async (dir) => {
    await createSavedIndex(dir);
    const loaded = await FaceIndex.load(dir, EXPECTED);
    assert.ok(loaded);
    const revived = randomUnitVector(createRandom(33));
    const added = randomUnitVector(createRandom(34));

    loaded.add(5, visitorUuid(1), revived);
    loaded.add(5000, visitorUuid(5000), added);

    assert.equal(loaded.search(revived)[0]?.faceId, 5);
    assert.equal(loaded.search(added)[0]?.faceId, 5000);
    assert.equal(loaded.stats().size, 898);
    assert.equal(loaded.stats().deletedCount, 2);
  });
});

test('load of empty directory returns null', async () => {
  await withTemporaryDirectory(async (dir) => {
    const reasons: string[] = [];

    const inEmpty = await FaceIndex.load(dir, EXPECTED, {
      onRebuildNeeded: (reason) => reasons.push(reason),
    });
    const inMissing = await FaceIndex.load(join(dir, 'absent'), EXPECTED, {
      onRebuildNeeded: (reason) => reasons.push(reason),
    });

    assert.equal(inEmpty, null);
    assert.equal(inMissing, null);
    assert.deepEqual(reasons, []);
  });
});

test('load with another model throws MODEL_MISMATCH', async () => {
  await withTemporaryDirectory(async (dir) => {
    await createSavedIndex(dir);

    for (const expected of [
      { modelId: 'other-model', dim: DIM },
      { modelId: MODEL_ID, dim: 512 },
    ]) {
      await assert.rejects(
        FaceIndex.load(dir, expected),
        (error) =>
          error instanceof FaceGateError &&
          error.code === 'MODEL_MISMATCH' &&
          /re-extract/.test(error.message),
      );
    }
  });
});

test('truncated graph file needs rebuild', async () => {
  await withTemporaryDirectory(async (dir) => {
    await createSavedIndex(dir);
    const indexPath = join(dir, (await readManifest(dir)).index.file);
    await truncate(indexPath, (await stat(indexPath)).size - 100);

    const reason = await loadExpectingRebuild(dir);

    assert.match(reason, /truncated/);
  });
});

test('graph file check finds short writes', async () => {
  await withTemporaryDirectory(async (dir) => {
    const path = join(dir, 'graph.hnsw');
    const graph = new hnswlib.HierarchicalNSW('ip', DIM);
    graph.initIndex({ maxElements: 300, m: 16 });
    for (const face of createGallery(40, 300, 1).faces)
      graph.addPoint(Array.from(face.vector), face.faceId);
    graph.writeIndexSync(path);
    const expected = { count: 300, dim: DIM, M: 16 };

    const complete = await checkGraphFile(path, expected);
    const wrongCount = await checkGraphFile(path, { ...expected, count: 299 });
    await truncate(path, (await stat(path)).size - 3);
    const short = await checkGraphFile(path, expected);

    assert.equal(complete, null);
    assert.match(wrongCount ?? '', /holds 300 elements, expected 299/);
    assert.match(short ?? '', /truncated/);
  });
});

test('corrupt metadata file needs rebuild', async () => {
  await withTemporaryDirectory(async (dir) => {
    await createSavedIndex(dir);
    const metadataPath = join(dir, (await readManifest(dir)).metadata.file);
    const text = await readFile(metadataPath, 'utf8');
    await writeFile(metadataPath, text.replace('"lastSeq":1234', '"lastSeq":9999'));

    const reason = await loadExpectingRebuild(dir);

    assert.match(reason, /SHA-256/);
  });
});

test('corrupt manifest needs rebuild', async () => {
  await withTemporaryDirectory(async (dir) => {
    await createSavedIndex(dir);
    await writeFile(join(dir, 'manifest.json'), '{"formatVersion":1,"generat');

    const reason = await loadExpectingRebuild(dir);

    assert.match(reason, /not valid JSON/);
  });
});

test('interrupted save keeps last generation', async () => {
  await withTemporaryDirectory(async (dir) => {
    const index = await createSavedIndex(dir);
    const completeStats = index.stats();
    const query = randomUnitVector(createRandom(35));
    const completeResults = index.search(query, { k: 3 });
    const { generation } = await readManifest(dir);
    // A save of the next generation that died after writing its files but before the manifest.
    const next = String(generation + 1).padStart(8, '0');
    await writeFile(join(dir, `index-${next}.hnsw.tmp-1a2b-0badf00d`), 'partial graph');
    await writeFile(join(dir, `index-${next}.hnsw`), 'renamed graph without a manifest');
    await writeFile(join(dir, `metadata-${next}.json.tmp-1a2b-0badf00d`), '{"formatVersion":1');
    await writeFile(join(dir, `manifest.json.tmp-1a2b-0badf00d`), '{');

    const loaded = await FaceIndex.load(dir, EXPECTED, { exactSearchMaxFaces: 0 });

    assert.ok(loaded);
    assert.deepEqual(loaded.stats(), completeStats);
    assert.deepEqual(loaded.search(query, { k: 3 }), completeResults);
  });
});

test('save removes older generations and stray files', async () => {
  await withTemporaryDirectory(async (dir) => {
    const index = await createSavedIndex(dir);
    await writeFile(join(dir, 'index-00000099.hnsw.tmp-1a2b-0badf00d'), 'partial graph');
    await writeFile(join(dir, 'operator-notes.txt'), 'not owned by the index');
    index.add(9000, visitorUuid(9000), randomUnitVector(createRandom(36)));

    const result = await index.save(dir);

    const manifest = await readManifest(dir);
    assert.equal(manifest.generation, 2);
    assert.equal(result.generation, 2);
    assert.deepEqual(result.cleanupFailures, []);
    assert.deepEqual((await readdir(dir)).sort(), [
      'index-00000002.hnsw',
      'manifest.json',
      'metadata-00000002.json',
      'operator-notes.txt',
    ]);
    const loaded = await FaceIndex.load(dir, EXPECTED);
    assert.equal(loaded?.stats().size, index.stats().size);
    assert.equal(loaded?.has(9000), true);
  });
});

test('concurrent saves both complete', async () => {
  await withTemporaryDirectory(async (dir) => {
    const index = await FaceIndex.build({ modelId: MODEL_ID }, createGallery(37, 20, 1).faces);

    const [first, second] = await Promise.all([index.save(dir), index.save(dir)]);

    assert.equal(first.generation, 1);
    assert.equal(second.generation, 2);
    assert.equal((await readManifest(dir)).generation, 2);
    assert.equal(index.stats().lastPersistedAt, second.savedAt);
  });
});

test('save of empty index loads empty', async () => {
  await withTemporaryDirectory(async (dir) => {
    const index = new FaceIndex({ modelId: MODEL_ID });

    await index.save(dir);
    const loaded = await FaceIndex.load(dir, EXPECTED);

    assert.ok(loaded);
    assert.deepEqual(loaded.stats(), index.stats());
    assert.deepEqual(loaded.search(randomUnitVector(createRandom(38))), []);
    loaded.add(1, visitorUuid(1), randomUnitVector(createRandom(39)));
    assert.equal(loaded.stats().size, 1);
  });
});

test('an index of another dataset is not loaded', async () => {
  await withTemporaryDirectory(async (dir) => {
    const index = new FaceIndex({ modelId: MODEL_ID, dim: DIM, datasetId: 'dataset-a' });
    index.add(1, visitorUuid(1), randomUnitVector(createRandom(5)));
    await index.save(dir);
    const reasons: string[] = [];

    const same = await FaceIndex.load(dir, { ...EXPECTED, datasetId: 'dataset-a' });
    const other = await FaceIndex.load(
      dir,
      { ...EXPECTED, datasetId: 'dataset-b' },
      { onRebuildNeeded: (reason) => reasons.push(reason) },
    );

    assert.equal(same?.stats().size, 1);
    assert.equal(other, null);
    assert.match(
      reasons[0] ?? '',
      /another database or schema \(dataset dataset-a, expected dataset-b\)/,
    );
  });
});
