import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { DetectedFace } from '@facegate/vision';

import { chooseFace } from '../src/batch/faces.js';

/** The image the faces are found in: its centre is at (200, 50). */
const IMAGE = { width: 400, height: 100 };

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
  const none = chooseFace([], IMAGE, 'skip', 40);
  const several = chooseFace([face(0, 80), face(200, 90)], IMAGE, 'skip', 40);
  const small = chooseFace([face(0, 30)], IMAGE, 'skip', 40);

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

  const largest = chooseFace(faces, IMAGE, 'largest', 40);
  const nearest = chooseFace(faces, IMAGE, 'skip', 40, { x: 0, y: 10, width: 80, height: 80 });

  assert.ok('face' in largest);
  assert.ok('face' in nearest);
  assert.equal(largest.face, faces[1]);
  assert.equal(largest.faceSize, 90);
  assert.match(largest.reason ?? '', /took the largest/);
  assert.equal(nearest.face, faces[0]);
});

test('centre policy picks the face nearest the centre', () => {
  // The smaller face is centred at (210, 50), the larger at (45, 55).
  const faces = [face(0, 90), face(170, 80)];

  const centre = chooseFace(faces, IMAGE, 'centre', 40);

  assert.ok('face' in centre);
  assert.equal(centre.face, faces[1]);
  assert.equal(centre.faceSize, 80);
  assert.match(centre.reason ?? '', /nearest the centre/);
});
