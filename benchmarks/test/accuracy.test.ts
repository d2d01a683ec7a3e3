import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { FACES_MISSING, facesDir, loadConfig } from '@facegate/config';
import { FacePipeline, defaultVerifyThreshold } from '@facegate/vision';

import { accuracyAt, embedLfwImages, pairSimilarities, parsePairs } from '../src/lfw.js';

const faces = facesDir();

test(
  'LFW fold 1 stays above the accuracy floor',
  { skip: faces ? false : FACES_MISSING, timeout: 300_000 },
  async () => {
    const pairs = parsePairs(await readFile(join(faces!, 'lfw-meta', 'pairs.txt'), 'utf8')).filter(
      (pair) => pair.fold === 0,
    );
    const paths = [...new Set(pairs.flatMap((pair) => [pair.a, pair.b]))];
    const pipeline = await FacePipeline.create(loadConfig({}));

    const embeddings = await embedLfwImages([pipeline], join(faces!, 'lfw'), paths);
    const accuracy = accuracyAt(
      pairs,
      pairSimilarities(pairs, embeddings),
      defaultVerifyThreshold(pipeline.modelId),
    );
    await pipeline.close();

    assert.equal(pairs.length, 600);
    // The whole pipeline scored 99.17% on this fold; a preprocessing regression
    // (channel order, alignment, normalisation) drops it far below 98%.
    assert.ok(accuracy >= 0.98, `fold 1 accuracy ${(accuracy * 100).toFixed(2)}% is below 98%`);
  },
);
