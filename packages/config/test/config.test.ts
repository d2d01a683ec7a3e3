import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConfigError, loadConfig } from '../src/index.js';

test('defaults parse without any variable set', () => {
  const config = loadConfig({});

  assert.equal(config.faceEmbedder, 'mobilefacenet_int8');
  assert.equal(config.faceDetector, 'yunet_2026may');
  assert.equal(config.maxImageBytes, 10 * 1024 * 1024);
  assert.equal(config.verifyThreshold, undefined);
});

test('numbers are coerced from strings', () => {
  const config = loadConfig({ DETECTION_MIN_SCORE: '0.75', VERIFY_THRESHOLD: '0.4' });

  assert.equal(config.detectionMinScore, 0.75);
  assert.equal(config.verifyThreshold, 0.4);
});

test('numbers take plain decimals only', () => {
  const config = loadConfig({ PORT: ' 8080 ', IDENTIFY_THRESHOLD: '', HNSW_EF: '4e2' });
  assert.equal(config.port, 8080);
  assert.equal(config.identifyThreshold, undefined);
  assert.equal(config.hnswEf, 400);

  const rejected: [string, string, RegExp][] = [
    ['PORT', '0x1F40', /PORT="0x1F40": must be a plain decimal number/],
    ['PORT', '0b11', /must be a plain decimal number/],
    ['PORT', '80.5', /PORT="80.5": must be a whole number/],
    ['PORT', '70000', /PORT="70000": must be at most 65535/],
    ['IDENTIFY_THRESHOLD', 'abc', /IDENTIFY_THRESHOLD="abc": must be a plain decimal number/],
    ['IDENTIFY_THRESHOLD', '0x1', /must be a plain decimal number/],
    ['IDENTIFY_THRESHOLD', '2', /must be at most 1/],
    ['DETECTION_MIN_SCORE', 'Infinity', /must be a plain decimal number/],
    ['MAX_CANDIDATES', '1_000', /must be a plain decimal number/],
  ];
  for (const [name, value, message] of rejected) {
    assert.throws(
      () => loadConfig({ [name]: value }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, `${name}=${value}`);
        assert.equal(error.problems.length, 1, `${name}=${value}`);
        assert.match(error.message, message);
        assert.doesNotMatch(error.message, /NaN|received/);
        return true;
      },
      `${name}=${value} was accepted`,
    );
  }
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
