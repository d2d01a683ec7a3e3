import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { loadConfig } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';

import { FacePipeline, type ModelEntry, loadModel, manifestEntry } from '../src/index.js';

const config = loadConfig({});
let scratch: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'facegate-models-'));
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function rejectsWithCode(code: string, pattern: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof FaceGateError, `expected FaceGateError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    return true;
  };
}

test('both default models load and match the manifest', async () => {
  for (const name of ['yunet_2026may', 'mobilefacenet_foamliu_128d']) {
    const entry = manifestEntry(name);

    const model = await loadModel(entry, { modelsDir: config.modelsDir, threads: 1 });

    assert.equal(model.sha256, entry.sha256);
    assert.deepEqual(
      model.inputNames,
      entry.inputs.map((input) => input.name),
    );
    await model.session.release();
  }
});

test('missing file is MODEL_UNAVAILABLE', async () => {
  const entry = manifestEntry('mobilefacenet_foamliu_128d');

  await assert.rejects(
    loadModel(entry, { modelsDir: scratch, threads: 1 }),
    rejectsWithCode('MODEL_UNAVAILABLE', /npm run setup/),
  );
});

test('truncated file is rejected before inference', async () => {
  const entry = manifestEntry('mobilefacenet_foamliu_128d');
  const bytes = await readFile(join(config.modelsDir, entry.file));
  const dir = join(scratch, 'truncated');
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  await writeFile(join(dir, entry.file), bytes.subarray(0, bytes.length - 1000));

  await assert.rejects(
    loadModel(entry, { modelsDir: dir, threads: 1 }),
    rejectsWithCode(
      'MODEL_MISMATCH',
      new RegExp(`${bytes.length - 1000} bytes .* expected ${entry.bytes} bytes`),
    ),
  );
});

test('file that breaks the tensor contract is rejected', async () => {
  const entry = manifestEntry('mobilefacenet_foamliu_128d');
  const wrongContract: ModelEntry = {
    ...entry,
    outputs: [{ name: 'output0', type: 'float32', shape: [1, 512] }],
  };

  await assert.rejects(
    loadModel(wrongContract, { modelsDir: config.modelsDir, threads: 1 }),
    rejectsWithCode('MODEL_MISMATCH', /output 'output0' has shape \[1,128\], expected \[1,512\]/),
  );
});

test('detector file under the embedder name is rejected', async () => {
  const embedder = manifestEntry('mobilefacenet_foamliu_128d');
  const detector = manifestEntry('yunet_2026may');
  const dir = join(scratch, 'swapped');
  await import('node:fs/promises').then((fs) => fs.mkdir(dir));
  await copyFile(join(config.modelsDir, detector.file), join(dir, embedder.file));
  // Same bytes and hash as the detector, so only the tensor contract can catch it.
  const lying: ModelEntry = { ...embedder, bytes: detector.bytes, sha256: detector.sha256 };

  await assert.rejects(
    loadModel(lying, { modelsDir: dir, threads: 1 }),
    rejectsWithCode('MODEL_MISMATCH', /input 'input0' is missing/),
  );
});

test('SFace without its file says how to switch', async () => {
  const sface = { ...config, modelsDir: scratch, faceEmbedder: 'sface' as const };
  await copyFile(
    join(config.modelsDir, manifestEntry('yunet_2026may').file),
    join(scratch, manifestEntry('yunet_2026may').file),
  );

  await assert.rejects(
    FacePipeline.create(sface),
    rejectsWithCode('MODEL_UNAVAILABLE', /FACE_EMBEDDER=mobilefacenet/),
  );
});
