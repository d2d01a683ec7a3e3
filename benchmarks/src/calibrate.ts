// Measures the activation ranges that int8 quantization of an embedder needs
// (`npm run calibrate`). The float model runs on aligned faces from photos that the accuracy
// and identification benchmarks do not use: WIDER FACE, PASCAL VOC group photos, the small
// identity set and the multi-face edge cases. Each tensor's range runs from the 1st
// percentile of its per-face minima to the 99th percentile of its per-face maxima, so that a
// few extreme faces do not coarsen the steps for all the others. The script writes the
// calibration file of every manifest entry with a `quantization` field.
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { findRepoRoot, loadConfig } from '@facegate/config';
import {
  type ModelEntry,
  FacePipeline,
  alignFace,
  exposeCalibratedTensors,
  readManifest,
  toEmbedderTensor,
} from '@facegate/vision';
import * as ort from 'onnxruntime-node';

import { FACES_MISSING, facesDir } from './faces-dir.js';

/** Faces whose shorter side is below this are left out, because their crops are upscaled blur. */
const MIN_FACE_PX = 40;
const PHOTO_FOLDERS = [
  'detection/wider_face_val_subset',
  'detection/dlib_voc2011_faces',
  'identity-small/face_recognition_knn',
  'edge/multi_face',
];
const LOW_PERCENTILE = 0.01;
const HIGH_PERCENTILE = 0.99;

async function listPhotos(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && /\.(jpe?g|png)$/i.test(entry.name))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

/** Six significant digits: enough for 8-bit steps, and a readable diff when ranges change. */
function round(value: number): number {
  return Number(value.toPrecision(6));
}

async function calibrate(
  pipeline: FacePipeline,
  entry: ModelEntry,
  modelsDir: string,
  photos: string[],
): Promise<void> {
  const floatBytes = await readFile(join(modelsDir, entry.file));
  const { modelBytes, names } = exposeCalibratedTensors(floatBytes);
  const session = await ort.InferenceSession.create(modelBytes, { intraOpNumThreads: 2 });
  const inputName = session.inputNames[0]!;
  const minima = new Map<string, number[]>([
    [inputName, []],
    ...names.map((name) => [name, []] as [string, number[]]),
  ]);
  const maxima = new Map<string, number[]>([...minima.keys()].map((name) => [name, []]));

  // Detect with the float pipeline, align each face large enough, and record the range of
  // every tensor on that face.
  let faces = 0;
  for (const path of photos) {
    let image;
    try {
      image = await pipeline.decode(await readFile(path));
    } catch {
      continue;
    }
    const found = await pipeline.detector.detect(
      image,
      pipeline.detectOptions({ minFaceSize: MIN_FACE_PX }),
    );
    for (const face of found) {
      const tensor = toEmbedderTensor(alignFace(image, face.landmarks), entry.preprocessing);
      const outputs = await session.run({
        [inputName]: new ort.Tensor('float32', tensor, [1, 3, 112, 112]),
      });
      const values: Record<string, Float32Array> = { [inputName]: tensor };
      for (const name of names) values[name] = outputs[name]!.data as Float32Array;
      for (const [name, data] of Object.entries(values)) {
        let low = Infinity;
        let high = -Infinity;
        for (const value of data) {
          if (value < low) low = value;
          if (value > high) high = value;
        }
        minima.get(name)!.push(low);
        maxima.get(name)!.push(high);
      }
      faces += 1;
    }
  }
  await session.release();
  if (faces === 0)
    throw new Error(`no face of at least ${MIN_FACE_PX} px was found in the calibration photos`);

  const ranges = Object.fromEntries(
    [...minima.keys()].map((name) => [
      name,
      {
        min: round(percentile(minima.get(name)!, LOW_PERCENTILE)),
        max: round(percentile(maxima.get(name)!, HIGH_PERCENTILE)),
      },
    ]),
  );
  const target = join(findRepoRoot(), 'models', entry.quantization!.calibration);
  const calibration = {
    model: entry.file,
    sha256: entry.sha256,
    faces,
    photos: photos.length,
    folders: PHOTO_FOLDERS,
    statistic: `per tensor: percentile ${LOW_PERCENTILE * 100} of the per-face minima to percentile ${HIGH_PERCENTILE * 100} of the per-face maxima`,
    ranges,
  };
  await writeFile(target, `${JSON.stringify(calibration, null, 2)}\n`);
  console.log(
    `${entry.name}: ${Object.keys(ranges).length} tensors over ${faces} faces from ${photos.length} photos -> ${target}`,
  );
}

async function main(): Promise<void> {
  const dir = facesDir();
  if (!dir) {
    console.error(FACES_MISSING);
    process.exit(2);
  }
  const config = loadConfig({ ...process.env, FACE_EMBEDDER: 'mobilefacenet' });
  const pipeline = await FacePipeline.create(config);
  const photos = (
    await Promise.all(PHOTO_FOLDERS.map((folder) => listPhotos(join(dir, folder))))
  ).flat();
  for (const entry of readManifest().models) {
    if (entry.quantization) await calibrate(pipeline, entry, config.modelsDir, photos);
  }
  await pipeline.close();
}

await main();
