// LFW View 2 accuracy of the whole pipeline (`npm run bench:accuracy`):
// 10-fold accuracy with the threshold chosen on nine folds, TAR at FAR=1e-3,
// and the single best threshold over all pairs. The last line reads
// "LFW accuracy: NN.NN%". Options: --pipelines N (concurrent pipelines, default 2).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { loadConfig } from '@facegate/config';
import { FacePipeline, defaultVerifyThreshold } from '@facegate/vision';

import { FACES_MISSING, facesDir } from './faces-dir.js';
import {
  accuracyAt,
  bestThreshold,
  embedLfwImages,
  pairSimilarities,
  parsePairs,
  tarAtFar,
  tenFold,
} from './lfw.js';

function percent(value: number): string {
  return `${(value * 100).toFixed(2)}%`;
}

async function main(): Promise<void> {
  const dir = facesDir();
  if (!dir) {
    console.error(FACES_MISSING);
    process.exit(1);
  }
  const pipelineCount = Number(process.argv[process.argv.indexOf('--pipelines') + 1] ?? 2) || 2;

  const config = loadConfig();
  const pairs = parsePairs(await readFile(join(dir, 'lfw-meta', 'pairs.txt'), 'utf8'));
  const paths = [...new Set(pairs.flatMap((pair) => [pair.a, pair.b]))];
  const pipelines = await Promise.all(
    Array.from({ length: pipelineCount }, () => FacePipeline.create(config)),
  );

  const started = Date.now();
  const embeddings = await embedLfwImages(pipelines, join(dir, 'lfw'), paths, (done) => {
    if (done % 1000 === 0) process.stderr.write(`embedded ${done}/${paths.length} photos\n`);
  });
  const seconds = (Date.now() - started) / 1000;

  const found = { default: 0, fallback: 0, none: 0 };
  for (const embedding of embeddings.values()) found[embedding.found] += 1;

  const scores = pairSimilarities(pairs, embeddings);
  const folds = tenFold(pairs, scores);
  const mean = folds.reduce((sum, fold) => sum + fold.accuracy, 0) / folds.length;
  const std = Math.sqrt(
    folds.reduce((sum, fold) => sum + (fold.accuracy - mean) ** 2, 0) / folds.length,
  );
  const tar = tarAtFar(pairs, scores, 1e-3);
  const overall = bestThreshold(pairs, scores);
  const modelId = pipelines[0]!.modelId;
  const defaultThreshold = defaultVerifyThreshold(modelId);

  console.log(
    `model: ${modelId}, detector: ${pipelines[0]!.detector.model.entry.name}, min score ${config.detectionMinScore}`,
  );
  console.log(
    `photos: ${paths.length} in ${seconds.toFixed(1)} s; face at default score ${found.default}, ` +
      `at fallback score ${found.fallback}, none ${found.none}`,
  );
  console.log('');
  console.log('| fold | threshold (9 folds) | accuracy |');
  console.log('|---|---|---|');
  for (const fold of folds)
    console.log(`| ${fold.fold + 1} | ${fold.threshold.toFixed(4)} | ${percent(fold.accuracy)} |`);
  console.log(`| mean | | ${percent(mean)} ± ${percent(std)} |`);
  console.log('');
  console.log(`TAR at FAR=1e-3: ${percent(tar.tar)} (threshold ${tar.threshold.toFixed(4)})`);
  console.log(
    `best single threshold over all pairs: ${overall.threshold.toFixed(4)} (${percent(overall.accuracy)})`,
  );
  console.log(
    `accuracy at the default threshold ${defaultThreshold}: ${percent(accuracyAt(pairs, scores, defaultThreshold))}`,
  );
  console.log(`LFW accuracy: ${(mean * 100).toFixed(2)}%`);

  await Promise.all(pipelines.map((pipeline) => pipeline.close()));
}

await main();
