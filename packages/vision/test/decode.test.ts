import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';
import sharp from 'sharp';

import { decodeImage, sniffFormat } from '../src/index.js';

const faces = facesDir();
const skip = faces ? false : FACES_MISSING;
const limits = { maxImageBytes: 10 * 1024 * 1024, maxImagePixels: 40_000_000 };
const edge = (path: string): Promise<Buffer> => readFile(join(faces!, 'edge', path));

async function rejectsWith(
  input: Uint8Array,
  code: string,
  pattern: RegExp,
  custom = limits,
): Promise<FaceGateError> {
  let caught: FaceGateError | undefined;
  await assert.rejects(decodeImage(input, custom), (error: unknown) => {
    assert.ok(error instanceof FaceGateError, `expected FaceGateError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    caught = error;
    return true;
  });
  return caught!;
}

test('zero-byte input is IMAGE_EMPTY', async () => {
  await rejectsWith(new Uint8Array(0), 'IMAGE_EMPTY', /empty/);
});

test('text is an unsupported format', async () => {
  await rejectsWith(
    Buffer.from('hello, this is not an image'),
    'IMAGE_UNSUPPORTED_FORMAT',
    /unrecognised data/,
  );
});

test('BMP header is named in the error', async () => {
  const bmp = Buffer.alloc(64);
  bmp.write('BM', 0, 'ascii');

  assert.equal(sniffFormat(bmp), 'bmp');
  await rejectsWith(bmp, 'IMAGE_UNSUPPORTED_FORMAT', /BMP/);
});

test('HEIC photo is an unsupported format', { skip }, async () => {
  await rejectsWith(await edge('odd_format/IMG_2682.heic'), 'IMAGE_UNSUPPORTED_FORMAT', /HEIC/);
});

test('truncated JPEG is IMAGE_CORRUPT', { skip }, async () => {
  const full = await edge('multi_face/couple.jpg');

  const error = await rejectsWith(
    full.subarray(0, Math.floor(full.length / 2)),
    'IMAGE_CORRUPT',
    /JPEG data is corrupt or truncated/,
  );
  assert.doesNotMatch(error.message, /Vips|_buffer:/);
});

test('JPEG header alone is IMAGE_CORRUPT', { skip }, async () => {
  const full = await edge('multi_face/couple.jpg');

  const error = await rejectsWith(full.subarray(0, 200), 'IMAGE_CORRUPT', /JPEG/);
  assert.doesNotMatch(error.message, /Vips|_buffer:/);
});

test('byte limit is checked before decoding', { skip }, async () => {
  const bytes = await edge('multi_face/couple.jpg');

  await rejectsWith(
    bytes,
    'IMAGE_TOO_LARGE',
    new RegExp(`${bytes.length} bytes; the limit is 500000 bytes`),
    {
      ...limits,
      maxImageBytes: 500_000,
    },
  );
});

test('pixel limit names size and limit', { skip }, async () => {
  const bytes = await edge('large/craft-beer.jpg');

  await rejectsWith(bytes, 'IMAGE_TOO_LARGE', /6000x4000 \(24 Mpx\); the limit is 20 Mpx/, {
    ...limits,
    maxImagePixels: 20_000_000,
  });
});

test('EXIF orientation 6 decodes upright', { skip }, async () => {
  const bytes = await edge('exif_orientation/portrait-orientation-6.jpg');
  const stored = await sharp(bytes).metadata();
  assert.deepEqual([stored.orientation, stored.width, stored.height], [6, 700, 840]);

  const image = await decodeImage(bytes, limits);

  assert.equal(image.width, 840);
  assert.equal(image.height, 700);
  assert.equal(image.data.length, 840 * 700 * 3);
});

test('single-channel JPEG expands to RGB', { skip }, async () => {
  const image = await decodeImage(await edge('grayscale/solvay.jpg'), limits);

  assert.equal(image.data.length, image.width * image.height * 3);
  const middle = ((image.height >> 1) * image.width + (image.width >> 1)) * 3;
  assert.equal(image.data[middle], image.data[middle + 1]);
  assert.equal(image.data[middle + 1], image.data[middle + 2]);
});

test('RGBA PNG is flattened to RGB', { skip }, async () => {
  const image = await decodeImage(await edge('png/32bit.png'), limits);

  assert.equal(image.format, 'png');
  assert.equal(image.data.length, 626 * 1200 * 3);
});

test('transparent pixels become white', async () => {
  const transparent = await sharp({
    create: { width: 4, height: 4, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
  })
    .png()
    .toBuffer();

  const image = await decodeImage(transparent, limits);

  assert.deepEqual([...image.data.subarray(0, 3)], [255, 255, 255]);
});

test('WebP content named .jpg decodes as WebP', { skip }, async () => {
  const image = await decodeImage(
    await edge('odd_format/img47_webp_with_jpg_extension.jpg'),
    limits,
  );

  assert.equal(image.format, 'webp');
  assert.equal(image.width, 1350);
});

test('CMYK JPEG converts to sRGB', async () => {
  const cmyk = await sharp({
    create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 40, b: 40 } },
  })
    .toColourspace('cmyk')
    .jpeg()
    .toBuffer();

  const image = await decodeImage(cmyk, limits);

  assert.equal(image.data.length, 8 * 8 * 3);
  assert.ok(
    image.data[0]! > 150 && image.data[1]! < 100,
    `expected a red pixel, got ${[...image.data.subarray(0, 3)].join(',')}`,
  );
});

test('16-bit PNG converts to 8-bit', async () => {
  const deep = await sharp({
    create: { width: 4, height: 4, channels: 3, background: { r: 100, g: 150, b: 200 } },
  })
    .toColourspace('rgb16')
    .png()
    .toBuffer();

  const image = await decodeImage(deep, limits);

  assert.equal(image.data.length, 4 * 4 * 3);
  assert.ok(Math.abs(image.data[0]! - 100) <= 1);
  assert.ok(Math.abs(image.data[2]! - 200) <= 1);
});

test('GIF decodes its first frame', async () => {
  const gif = await sharp({
    create: { width: 6, height: 5, channels: 3, background: { r: 0, g: 0, b: 255 } },
  })
    .gif()
    .toBuffer();

  const image = await decodeImage(gif, limits);

  assert.equal(image.format, 'gif');
  assert.equal(image.width, 6);
  assert.equal(image.height, 5);
});
