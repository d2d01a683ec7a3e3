import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';

import { VisionPool } from '../src/pool.js';
import type { ImageAnalysis } from '../src/thread-messages.js';

const faces = facesDir();

test(
  'pool answers concurrent tasks correctly',
  { skip: faces ? false : FACES_MISSING },
  async () => {
    process.env.ONNX_THREADS = '1';
    process.env.ONNX_IDLE_THREADS = '1';
    // One thread, so that it is given two tasks and the pool queues the rest.
    const pool = new VisionPool(1, 8);
    after(() => pool.close());
    const edge = join(faces!, 'edge');
    const photos = await Promise.all(
      [
        join(faces!, 'identity-small', 'face_recognition_knn', 'test', 'obama1.jpg'),
        join(edge, 'multi_face', 'couple.jpg'),
        join(edge, 'no_face', 'Landscape_0.jpg'),
        join(edge, 'multi_face', 'two_people.jpg'),
      ].map((path) => readFile(path)),
    );
    const corrupt = (): Uint8Array => Uint8Array.from(photos[0]!.subarray(0, 2000));
    await pool.warmUp();

    const alone: ImageAnalysis[] = [];
    for (const photo of photos) alone.push(await pool.analyze(Uint8Array.from(photo), {}));
    assert.deepEqual(
      alone.map((result) => result.faces.length),
      [1, 2, 0, 2],
      'the photos give different answers, so a mixed-up reply would show',
    );

    // The corrupt image goes first: its error must not hold up or change the others.
    const [broken, ...together] = await Promise.all([
      pool.analyze(corrupt(), {}).catch((error: unknown) => error),
      ...photos.map((photo) => pool.analyze(Uint8Array.from(photo), {})),
    ]);
    assert.ok(broken instanceof FaceGateError, `expected a FaceGateError, got ${String(broken)}`);
    assert.equal(broken.code, 'IMAGE_CORRUPT');
    together.forEach((result, index) => {
      const expected = alone[index]!;
      assert.deepEqual(result.image, expected.image);
      assert.deepEqual(
        result.faces.map((face) => face.box),
        expected.faces.map((face) => face.box),
      );
    });

    // The same images through several concurrent analyzeEach calls.
    const eachResults = await Promise.all([
      pool.analyzeEach([Uint8Array.from(photos[0]!), Uint8Array.from(photos[1]!)], {}),
      pool.analyzeEach([corrupt(), Uint8Array.from(photos[2]!)], {}),
      pool.analyzeEach([Uint8Array.from(photos[3]!)], {}),
    ]);
    const flat = eachResults.flat();
    assert.ok(flat[2] instanceof FaceGateError);
    const answers = [flat[0]!, flat[1]!, flat[3]!, flat[4]!];
    answers.forEach((result, index) => {
      if (result instanceof Error) assert.fail(`photo ${index} failed: ${result.message}`);
      assert.deepEqual(
        result.faces.map((face) => face.box),
        alone[index]!.faces.map((face) => face.box),
      );
    });
  },
);

test('pool rejects an already transferred buffer', async () => {
  const pool = new VisionPool(1, 4);
  after(() => pool.close());
  const bytes = Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4]);
  await pool.analyze(bytes, {}).catch(() => undefined);
  assert.equal(bytes.byteLength, 0, 'the pool transfers the buffer it is given');
  for (const attempt of [() => pool.analyze(bytes, {}), () => pool.analyzeEach([bytes], {})]) {
    const outcome = await Promise.race([
      attempt().then(
        (result) => (Array.isArray(result) ? result[0] : result),
        (error: unknown) => error,
      ),
      new Promise((resolve) => setTimeout(resolve, 20_000, 'no answer')),
    ]);
    assert.ok(outcome instanceof FaceGateError, `expected a FaceGateError, got ${String(outcome)}`);
    assert.equal(outcome.code, 'IMAGE_EMPTY');
  }
});
