import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { FACES_MISSING, facesDir } from '@facegate/config';

const faces = facesDir();
const skip = faces ? false : FACES_MISSING;
const main = fileURLToPath(new URL('../src/main.js', import.meta.url));

function fr(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('detect prints faces with box, score and landmarks', { skip }, () => {
  const result = fr('detect', join(faces!, 'edge', 'multi_face', 'couple.jpg'));

  assert.equal(result.status, 0, result.stderr);
  const output = JSON.parse(result.stdout) as {
    faces: { box: object; score: number; landmarks: number[][] }[];
  };
  assert.equal(output.faces.length, 2);
  for (const face of output.faces) {
    assert.deepEqual(Object.keys(face.box).sort(), ['height', 'width', 'x', 'y']);
    assert.ok(face.score > 0.7);
    assert.ok(face.score <= 1);
    assert.equal(face.landmarks.length, 5);
  }
});

test('verify matches the same person', { skip }, () => {
  const lfw = join(faces!, 'lfw', 'Aaron_Peirsol');

  const result = fr(
    'verify',
    join(lfw, 'Aaron_Peirsol_0001.jpg'),
    join(lfw, 'Aaron_Peirsol_0002.jpg'),
  );

  assert.equal(result.status, 0, result.stderr);
  const output = JSON.parse(result.stdout) as {
    similarity: number;
    match: boolean;
    threshold: number;
  };
  assert.equal(output.match, true);
  assert.ok(output.similarity > output.threshold);
});

test('verify rejects a photo with no face', { skip }, () => {
  const result = fr(
    'verify',
    join(faces!, 'edge', 'no_face', 'silver_fir.jpg'),
    join(faces!, 'edge', 'png', '32bit.png'),
  );

  assert.equal(result.status, 1);
  assert.equal((JSON.parse(result.stderr) as { error: { code: string } }).error.code, 'NO_FACE');
});

test('unsupported file exits non-zero with its code', { skip }, () => {
  const result = fr('detect', join(faces!, 'edge', 'odd_format', 'IMG_2682.heic'));

  assert.equal(result.status, 1);
  const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string } };
  assert.equal(error.code, 'IMAGE_UNSUPPORTED_FORMAT');
  assert.match(error.message, /HEIC/);
});

test('bad usage exits 2', () => {
  assert.equal(fr('detect').status, 2);
  assert.equal(fr('detect', 'a.jpg', '--min-score', '7').status, 2);
  assert.equal(fr('frobnicate').status, 2);
});

test('invalid configuration is reported', () => {
  const result = spawnSync(process.execPath, [main, 'detect', 'x.jpg'], {
    encoding: 'utf8',
    env: { ...process.env, FACE_EMBEDDER: 'arcface', DETECTION_MIN_SCORE: '3' },
  });

  assert.equal(result.status, 2);
  assert.match(result.stderr, /FACE_EMBEDDER/);
  assert.match(result.stderr, /DETECTION_MIN_SCORE/);
});

test('a relative image path is read from the directory npm was called from', { skip }, () => {
  const lfw = join(faces!, 'lfw', 'Aaron_Peirsol');
  // As `npm run -s fr -- ...` runs it: in the repository root, with INIT_CWD set.
  const result = spawnSync(
    process.execPath,
    [main, 'verify', 'Aaron_Peirsol_0001.jpg', 'Aaron_Peirsol_0002.jpg'],
    {
      encoding: 'utf8',
      cwd: fileURLToPath(new URL('../../../..', import.meta.url)),
      env: { ...process.env, INIT_CWD: lfw },
    },
  );

  assert.equal(result.status, 0, result.stderr);
  assert.equal((JSON.parse(result.stdout) as { match: boolean }).match, true);
});

test('usage errors are one JSON line', () => {
  for (const args of [['frobnicate'], ['batch'], ['batch', 'directory'], ['keys', 'rename']]) {
    const result = fr(...args);

    assert.equal(result.status, 2, args.join(' '));
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    const { error } = JSON.parse(lines[0]!) as { error: { code: string; message: string } };
    assert.equal(error.code, 'INVALID_REQUEST');
    assert.match(error.message, /see 'fr( \w+)? --help'$/);
  }
});
