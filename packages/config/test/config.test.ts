import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConfigError, loadConfig } from '../src/index.js';

test('defaults parse without any variable set', () => {
  const config = loadConfig({});

  assert.equal(config.faceEmbedder, 'mobilefacenet');
  assert.equal(config.faceDetector, 'yunet_2026may');
  assert.equal(config.maxImageBytes, 10 * 1024 * 1024);
  assert.equal(config.verifyThreshold, undefined);
});

test('numbers are coerced from strings', () => {
  const config = loadConfig({ DETECTION_MIN_SCORE: '0.75', VERIFY_THRESHOLD: '0.4' });

  assert.equal(config.detectionMinScore, 0.75);
  assert.equal(config.verifyThreshold, 0.4);
});

test('every invalid variable is reported together', () => {
  const env = { FACE_EMBEDDER: 'arcface', DETECTOR_INPUT_SIZE: '100', MAX_IMAGE_BYTES: 'ten' };

  assert.throws(
    () => loadConfig(env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 3);
      assert.match(error.message, /FACE_EMBEDDER="arcface"/);
      assert.match(error.message, /DETECTOR_INPUT_SIZE="100": must be a multiple of 32/);
      assert.match(error.message, /MAX_IMAGE_BYTES="ten"/);
      return true;
    },
  );
});
