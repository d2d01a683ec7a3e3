import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { DetectedFace } from '@facegate/vision';

import { chooseFace } from '../src/batch/faces.js';

function face(x: number, size: number): DetectedFace {
  return {
    box: { x, y: 10, width: size, height: size },
    score: 0.95,
    landmarks: [
      [x, 10],
      [x + 1, 10],
      [x, 11],
      [x, 12],
      [x + 1, 12],
    ],
  };
}

test('outcomes carry the enrol error codes', () => {
  const none = chooseFace([], 'skip', 40);
  const several = chooseFace([face(0, 80), face(200, 90)], 'skip', 40);
  const small = chooseFace([face(0, 30)], 'skip', 40);

  assert.ok('outcome' in none);
  assert.ok('outcome' in several);
  assert.ok('outcome' in small);
  assert.deepEqual(
    [none.outcome.status, none.outcome.code, none.outcome.facesDetected],
    ['no_face', 'NO_FACE', 0],
  );
  assert.deepEqual(
    [several.outcome.status, several.outcome.code, several.outcome.facesDetected],
    ['multiple_faces', 'MULTIPLE_FACES', 2],
  );
  assert.deepEqual(
    [small.outcome.status, small.outcome.code, small.outcome.facesDetected],
    ['too_small', 'FACE_TOO_SMALL', 1],
  );
});

test('largest policy and stored box pick a face', () => {
  const faces = [face(0, 80), face(200, 90)];

  const largest = chooseFace(faces, 'largest', 40);
  const nearest = chooseFace(faces, 'skip', 40, { x: 0, y: 10, width: 80, height: 80 });

  assert.ok('face' in largest);
  assert.ok('face' in nearest);
  assert.equal(largest.face, faces[1]);
  assert.equal(largest.faceSize, 90);
  assert.match(largest.reason ?? '', /took the largest/);
  assert.equal(nearest.face, faces[0]);
});
