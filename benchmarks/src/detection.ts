// Detection score threshold sweep (`npm run bench:detection`): for several
// minimum scores, how many LFW pair photos have no face, how many faces are
// found in photos with no face, and recall and precision on the WIDER FACE
// subset by face size. Used to choose DETECTION_MIN_SCORE.
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { loadConfig } from '@facegate/config';
import { type Box, type DetectedFace, FacePipeline } from '@facegate/vision';

import { FACES_MISSING, facesDir } from './faces-dir.js';

const THRESHOLDS = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
const SIZE_BINS: [string, number, number][] = [
  ['<16 px', 0, 16],
  ['16-32 px', 16, 32],
  ['32-64 px', 32, 64],
  ['>=64 px', 64, Infinity],
];

function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const intersection = ix * iy;
  return intersection / (a.width * a.height + b.width * b.height - intersection);
}

async function detectAll(pipeline: FacePipeline, path: string): Promise<DetectedFace[]> {
  const result = await pipeline.detect(await readFile(path), {
    minScore: THRESHOLDS[0]!,
    maxFaces: 5000,
    minFaceSize: 0,
  });
  return result.faces;
}

async function main(): Promise<void> {
  const dir = facesDir();
  if (!dir) {
    console.error(FACES_MISSING);
    process.exit(1);
  }
  const pipeline = await FacePipeline.create(loadConfig());

  const lfwPaths = (await readFile(join(dir, 'lfw-meta', 'pairs_referenced_images.txt'), 'utf8'))
    .trim()
    .split('\n');
  const lfwBest: number[] = [];
  for (const path of lfwPaths) {
    const faces = await detectAll(pipeline, join(dir, 'lfw', path.trim()));
    lfwBest.push(Math.max(0, ...faces.map((face) => face.score)));
  }

  const noFaceDir = join(dir, 'edge', 'no_face');
  const noFaceScores: number[][] = [];
  for (const name of (await readdir(noFaceDir)).sort())
    noFaceScores.push((await detectAll(pipeline, join(noFaceDir, name))).map((f) => f.score));

  const widerDir = join(dir, 'detection', 'wider_face_val_subset');
  const truth = new Map<string, Box[]>();
  const rows = (await readFile(join(widerDir, 'DERIVED_boxes.csv'), 'utf8'))
    .trim()
    .split('\n')
    .slice(1);
  for (const row of rows) {
    const [image, x, y, w, h, , , , invalid] = row.split(',');
    if (invalid === '1') continue;
    const boxes = truth.get(image!) ?? [];
    boxes.push({ x: Number(x), y: Number(y), width: Number(w), height: Number(h) });
    truth.set(image!, boxes);
  }
  const widerDetections = new Map<string, DetectedFace[]>();
  for (const image of truth.keys())
    widerDetections.set(image, await detectAll(pipeline, join(widerDir, 'images', image)));

  console.log(
    `detector: ${pipeline.detector.model.entry.name}, input long side ${pipeline.config.detectorInputSize}`,
  );
  console.log(
    `LFW: ${lfwPaths.length} photos; no-face set: ${noFaceScores.length} photos; WIDER: ${truth.size} photos, ${rows.length} boxes (invalid ignored)`,
  );
  console.log('');
  const header = [
    'min score',
    'LFW photos without a face',
    'faces in no-face photos',
    'WIDER precision',
    ...SIZE_BINS.map(([name]) => `WIDER recall ${name}`),
  ];
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const threshold of THRESHOLDS) {
    const lfwMissing = lfwBest.filter((score) => score < threshold).length;
    const falseFaces = noFaceScores.reduce(
      (sum, scores) => sum + scores.filter((score) => score >= threshold).length,
      0,
    );
    const found = SIZE_BINS.map(() => 0);
    const total = SIZE_BINS.map(() => 0);
    let truePositives = 0;
    let detections = 0;
    for (const [image, boxes] of truth) {
      const faces = widerDetections.get(image)!.filter((face) => face.score >= threshold);
      detections += faces.length;
      const used = new Set<number>();
      for (const box of boxes) {
        const bin = SIZE_BINS.findIndex(
          ([, low, high]) =>
            Math.max(box.width, box.height) >= low && Math.max(box.width, box.height) < high,
        );
        total[bin]! += 1;
        const match = faces.findIndex((face, i) => !used.has(i) && iou(face.box, box) >= 0.5);
        if (match >= 0) {
          used.add(match);
          found[bin]! += 1;
          truePositives += 1;
        }
      }
    }
    const recall = SIZE_BINS.map(
      (_, i) => `${((100 * found[i]!) / Math.max(1, total[i]!)).toFixed(1)}% of ${total[i]!}`,
    );
    const precision =
      detections === 0 ? 'n/a' : `${((100 * truePositives) / detections).toFixed(1)}%`;
    console.log(
      `| ${threshold} | ${lfwMissing} | ${falseFaces} | ${precision} | ${recall.join(' | ')} |`,
    );
  }
  await pipeline.close();
}

await main();
