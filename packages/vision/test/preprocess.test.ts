import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  ALIGNMENT_TEMPLATE,
  type Candidate,
  type Point,
  decodeYunet,
  estimateSimilarity,
  nonMaxSuppression,
  planDetectorInput,
  readManifest,
  toDetectorPixels,
  toEmbedderTensor,
  warpSimilarity,
} from '../src/index.js';

const close = (actual: number, expected: number, tolerance = 1e-4): void =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${actual} is not within ${tolerance} of ${expected}`,
  );

test('detector input keeps aspect ratio and pads to 32', () => {
  assert.deepEqual(planDetectorInput(1920, 1080, 640), {
    scaledWidth: 640,
    scaledHeight: 360,
    inputWidth: 640,
    inputHeight: 384,
  });
  assert.deepEqual(planDetectorInput(640, 480, 640), {
    scaledWidth: 640,
    scaledHeight: 480,
    inputWidth: 640,
    inputHeight: 480,
  });
  assert.deepEqual(planDetectorInput(250, 250, 640), {
    scaledWidth: 250,
    scaledHeight: 250,
    inputWidth: 256,
    inputHeight: 256,
  });
  assert.deepEqual(planDetectorInput(1000, 3000, 640, [640, 640]), {
    scaledWidth: 213,
    scaledHeight: 640,
    inputWidth: 640,
    inputHeight: 640,
  });
});

test('detector pixels pad right and bottom', () => {
  // 2x1 image in a 4x2 input: pixel 0 is (R=10, G=20, B=30), pixel 1 is (R=40, G=50, B=60).
  const rgb = new Uint8Array([10, 20, 30, 40, 50, 60]);

  const pixels = toDetectorPixels(rgb, 2, 1, 4, 2);

  assert.equal(pixels.length, 4 * 2 * 3);
  assert.deepEqual([...pixels.subarray(0, 12)], [10, 20, 30, 40, 50, 60, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...pixels.subarray(12)], new Array(12).fill(0));
});

test('detector pixels that fit are not copied', () => {
  const rgb = new Uint8Array(8 * 3 * 3).map((_, i) => i % 256);

  const pixels = toDetectorPixels(rgb, 8, 3, 8, 3);

  assert.equal(pixels, rgb);
});

test('mobilefacenet tensor uses RGB with ImageNet mean and std', () => {
  const profile = readManifest().models.find(
    (m) => m.name === 'mobilefacenet_foamliu_128d',
  )!.preprocessing;
  const crop = new Uint8Array(112 * 112 * 3);
  crop.set([255, 0, 128], 0);

  const tensor = toEmbedderTensor(crop, profile);

  assert.equal(tensor.length, 3 * 112 * 112);
  close(tensor[0]!, (1 - 0.485) / 0.229);
  close(tensor[112 * 112]!, (0 - 0.456) / 0.224);
  close(tensor[2 * 112 * 112]!, (128 / 255 - 0.406) / 0.225);
  close(tensor[1]!, -0.485 / 0.229);
});

test('sface tensor uses RGB raw values', () => {
  const profile = readManifest().models.find((m) => m.name === 'sface_2021dec')!.preprocessing;
  const crop = new Uint8Array(112 * 112 * 3);
  crop.set([255, 7, 128], 0);

  const tensor = toEmbedderTensor(crop, profile);

  assert.equal(tensor[0], 255);
  assert.equal(tensor[112 * 112], 7);
  assert.equal(tensor[2 * 112 * 112], 128);
});

test('similarity of the template onto itself is the identity', () => {
  const matrix = estimateSimilarity(ALIGNMENT_TEMPLATE, ALIGNMENT_TEMPLATE);

  [1, 0, 0, 0, 1, 0].forEach((expected, i) => close(matrix[i]!, expected, 1e-9));
});

test('similarity recovers a known rotation, scale and shift', () => {
  const angle = Math.PI / 6;
  const scale = 2.5;
  const a = scale * Math.cos(angle);
  const b = scale * Math.sin(angle);
  const source: Point[] = ALIGNMENT_TEMPLATE.map(([x, y]) => [x, y]);
  const target: Point[] = source.map(([x, y]) => [a * x - b * y + 17, b * x + a * y - 4]);

  const matrix = estimateSimilarity(source, target);

  [a, -b, 17, b, a, -4].forEach((expected, i) => close(matrix[i]!, expected, 1e-9));
});

test('warp with the identity copies pixels and fills black outside', () => {
  const width = 4;
  const height = 3;
  const data = new Uint8Array(width * height * 3).map((_, i) => (i * 7) % 251);

  const crop = warpSimilarity({ width, height, data }, [1, 0, 0, 0, 1, 0], 5);

  for (let y = 0; y < 5; y += 1) {
    for (let x = 0; x < 5; x += 1) {
      for (let c = 0; c < 3; c += 1) {
        const expected = x < width && y < height ? data[(y * width + x) * 3 + c]! : 0;
        assert.equal(crop[(y * 5 + x) * 3 + c], expected, `pixel ${x},${y} channel ${c}`);
      }
    }
  }
});

test('warp rounds bilinear samples to nearest', () => {
  const width = 40;
  const height = 30;
  const data = new Uint8Array(width * height * 3).map((_, i) => (i * 53 + 7) % 256);
  // Rotated by about 17 degrees, scaled by 0.8 and shifted, so every sample falls between
  // pixels, and the crop stays inside the image.
  const matrix: [number, number, number, number, number, number] = [
    0.765, -0.234, -2.5, 0.234, 0.765, -8,
  ];

  const crop = warpSimilarity({ width, height, data }, matrix, 16);

  const det = matrix[0] ** 2 + matrix[3] ** 2;
  for (let v = 0; v < 16; v += 1) {
    for (let u = 0; u < 16; u += 1) {
      const x = (matrix[0] * (u - matrix[2]) + matrix[3] * (v - matrix[5])) / det;
      const y = (-matrix[3] * (u - matrix[2]) + matrix[0] * (v - matrix[5])) / det;
      const x0 = Math.floor(x);
      const y0 = Math.floor(y);
      const fx = x - x0;
      const fy = y - y0;
      for (let c = 0; c < 3; c += 1) {
        const at = (dx: number, dy: number): number => data[((y0 + dy) * width + x0 + dx) * 3 + c]!;
        const expected = Math.round(
          (1 - fx) * (1 - fy) * at(0, 0) +
            fx * (1 - fy) * at(1, 0) +
            (1 - fx) * fy * at(0, 1) +
            fx * fy * at(1, 1),
        );
        assert.equal(crop[(v * 16 + u) * 3 + c], expected, `pixel ${u},${v} channel ${c}`);
      }
    }
  }
});

test('yunet decoding follows the FaceDetectorYN formulas', () => {
  // 64x32 input: stride 8 has 8x4 anchors, stride 16 4x2, stride 32 2x1.
  const outputs: Record<string, Float32Array> = {};
  for (const stride of [8, 16, 32]) {
    const anchors = (64 / stride) * (32 / stride);
    outputs[`cls_${stride}`] = new Float32Array(anchors);
    outputs[`obj_${stride}`] = new Float32Array(anchors);
    outputs[`bbox_${stride}`] = new Float32Array(anchors * 4);
    outputs[`kps_${stride}`] = new Float32Array(anchors * 10);
  }
  // Anchor at row 1, col 2 of stride 8 (index 1 * 8 + 2 = 10).
  outputs.cls_8![10] = 0.81;
  outputs.obj_8![10] = 1.2; // clamped to 1
  outputs.bbox_8!.set([0.5, 0.25, Math.log(2), Math.log(3)], 40);
  outputs.kps_8!.set([0.1, 0.2, 0, 0, 0, 0, 0, 0, 0, 0], 100);

  const candidates = decodeYunet(outputs, 64, 32, 0.5);

  assert.equal(candidates.length, 1);
  const face = candidates[0]!;
  close(face.score, 0.9);
  // Centre ((2 + 0.5) * 8, (1 + 0.25) * 8) = (20, 10); size (16, 24).
  close(face.x1, 12);
  close(face.y1, -2);
  close(face.x2, 28);
  close(face.y2, 22);
  close(face.landmarks[0]!, 16.8);
  close(face.landmarks[1]!, 9.6);
});

test('non-maximum suppression keeps the best of overlapping boxes', () => {
  const box = (x1: number, score: number): Candidate => ({
    x1,
    y1: 0,
    x2: x1 + 10,
    y2: 10,
    score,
    landmarks: new Float32Array(10),
  });

  const kept = nonMaxSuppression([box(0, 0.8), box(1, 0.9), box(30, 0.7)], 0.3);

  assert.deepEqual(
    kept.map((c) => [c.x1, c.score]),
    [
      [1, 0.9],
      [30, 0.7],
    ],
  );
});

test('reused detector pixels get their padding zeroed', () => {
  const rgb = new Uint8Array([10, 20, 30, 40, 50, 60]);
  const reused = new Uint8Array(4 * 2 * 3).fill(99);

  const pixels = toDetectorPixels(rgb, 2, 1, 4, 2, reused);

  assert.equal(pixels, reused);
  assert.deepEqual([...pixels], [10, 20, 30, 40, 50, 60, ...new Array(18).fill(0)]);
});

test('detector pixels of another size are not reused', () => {
  const rgb = new Uint8Array([10, 20, 30, 40, 50, 60]);
  const wrongSize = new Uint8Array(2 * 2 * 3).fill(99);

  const pixels = toDetectorPixels(rgb, 2, 1, 4, 2, wrongSize);

  assert.notEqual(pixels, wrongSize);
  assert.deepEqual([...wrongSize], new Array(12).fill(99));
  assert.deepEqual([...pixels.subarray(0, 6)], [10, 20, 30, 40, 50, 60]);
});
