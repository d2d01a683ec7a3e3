// Per-stage speed of the in-process pipeline (`npm run bench:vision`): decode,
// detect, align and embed for a 640x480 and a 1920x1080 one-face JPEG, p50 and
// p99 over --iterations runs (default 300), next to the bare model inference
// measured in the same run. The stages take turns within each iteration, so a
// change in the machine's speed during the run affects every figure alike. ONNX
// sessions use ONNX_THREADS (default 1), as a service worker does.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { facesDir, findRepoRoot, loadConfig } from '@facegate/config';
import {
  alignFace,
  FacePipeline,
  largestFace,
  prepareDetectorInput,
  ATOMIC_GC_FLAG,
  atomicGarbageCollection,
} from '@facegate/vision';
import sharp from 'sharp';

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** Runs every stage once per iteration, in turn, after a warm-up, and returns the samples per stage. */
async function timeInTurns(
  iterations: number,
  stages: readonly (readonly [string, () => unknown])[],
): Promise<number[][]> {
  const samples = stages.map((): number[] => []);
  const warmUp = Math.min(20, iterations);
  for (let i = 0; i < warmUp + iterations; i += 1) {
    for (const [index, [, run]] of stages.entries()) {
      const start = performance.now();
      await run();
      if (i >= warmUp) samples[index]!.push(performance.now() - start);
    }
  }
  return samples;
}

/** Test images: the peer benchmark's 640x480 JPEG and a 1920x1080 JPEG made from a real photo in memory. */
async function loadImages(): Promise<[string, Buffer][]> {
  const peers = join(findRepoRoot(), '..', 'shared', 'peers', 'obama1_640x480.jpg');
  const faces = facesDir();
  if (!faces) throw new Error('test photos not found: set FACES_DIR');
  const source = join(faces, 'identity-small', 'face_recognition_knn', 'test', 'obama1.jpg');
  const small = await readFile(peers).catch(async () =>
    sharp(source).resize(640, 480, { fit: 'cover' }).jpeg({ quality: 90 }).toBuffer(),
  );
  const large = await sharp(source)
    .resize(1920, 1080, { fit: 'cover' })
    .jpeg({ quality: 90 })
    .toBuffer();
  return [
    ['640x480', small],
    ['1920x1080', large],
  ];
}

async function main(): Promise<void> {
  // The in-process reference needs the garbage collection settings of the inference workers.
  if (!atomicGarbageCollection()) {
    console.warn(`started without ${ATOMIC_GC_FLAG}: run it through its npm script`);
  }
  const iterationsArg = process.argv.indexOf('--iterations');
  const iterations = iterationsArg > 0 ? Number(process.argv[iterationsArg + 1]) : 300;
  const config = loadConfig();
  const pipeline = await FacePipeline.create(config);

  console.log(
    `models: ${pipeline.detector.model.entry.name} + ${pipeline.modelId}; ONNX threads per session: ${config.onnxThreads}; ${iterations} runs per figure`,
  );
  console.log('');
  console.log('| image | stage | p50 ms | p99 ms |');
  console.log('|---|---|---|---|');

  for (const [label, bytes] of await loadImages()) {
    const image = await pipeline.decode(bytes);
    const faces = await pipeline.detector.detect(image, pipeline.detectOptions());
    const face = largestFace(faces);
    if (!face) throw new Error(`no face found in the ${label} image`);
    const crop = alignFace(image, face.landmarks);
    const input = await prepareDetectorInput(image, config.detectorInputSize);
    const embedderInput = pipeline.embedder.preprocess(crop);

    const stages: (readonly [string, () => unknown])[] = [
      ['decode', () => pipeline.decode(bytes)],
      [
        'detect (resize, tensor, YuNet, decode, NMS)',
        () => pipeline.detector.detect(image, pipeline.detectOptions()),
      ],
      ['align', () => alignFace(image, face.landmarks)],
      ['embed (preprocess, model, normalise)', () => pipeline.embedder.embed([crop])],
      ['whole pipeline (analyze)', () => pipeline.analyze(bytes)],
      [
        `bare YuNet run (${input.inputWidth}x${input.inputHeight})`,
        () => pipeline.detector.run(input),
      ],
      ['bare embedder run', () => pipeline.embedder.runBatch([embedderInput])],
    ];
    const p50s = new Map<string, number>();
    const samplesByStage = await timeInTurns(iterations, stages);
    for (const [index, [name]] of stages.entries()) {
      const samples = samplesByStage[index]!;
      p50s.set(name, percentile(samples, 50));
      console.log(
        `| ${label} | ${name} | ${percentile(samples, 50).toFixed(2)} | ${percentile(samples, 99).toFixed(2)} |`,
      );
    }
    const bare = [...p50s]
      .filter(([name]) => name.startsWith('bare'))
      .reduce((sum, [, value]) => sum + value, 0);
    const whole = p50s.get('whole pipeline (analyze)')!;
    console.log(`| ${label} | pipeline / bare models (p50) | ${(whole / bare).toFixed(2)}x | |`);
  }
  await pipeline.close();
}

await main();
