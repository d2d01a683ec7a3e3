// The fast JPEG path against sharp, on real photos: same pixels for every file it
// takes, and the files it must leave to sharp recognised from their headers.
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { FACES_MISSING, facesDir } from '@facegate/config';
import sharp from 'sharp';

import { decodePlainJpeg, fastJpegStatus, isPlainJpeg, readJpegHeader } from '../src/fast-jpeg.js';
import { decodeImage } from '../src/index.js';

const faces = facesDir();
const skip = faces ? false : FACES_MISSING;
const limits = { maxImageBytes: 10 * 1024 * 1024, maxImagePixels: 40_000_000 };
const expectEnabled =
  process.env.FACEGATE_NATIVE_JPEG !== 'off' &&
  process.platform === 'linux' &&
  process.arch === 'x64';

/** Decodes with sharp as decodeImage did before the fast path: upright 8-bit RGB. */
async function sharpRgb(bytes: Buffer): Promise<Buffer> {
  return sharp(bytes).rotate().toColourspace('srgb').removeAlpha().raw().toBuffer();
}

/** Reads a few photos from the LFW folders and the edge cases. */
async function samplePhotos(): Promise<[string, Buffer][]> {
  const lfw = join(faces!, 'lfw');
  const people = (await readdir(lfw)).sort().filter((_, i) => i % 400 === 0);
  const files = await Promise.all(
    people.map(async (person) => {
      const [first] = (await readdir(join(lfw, person))).sort();
      return join(lfw, person, first!);
    }),
  );
  files.push(
    join(faces!, 'edge', 'grayscale', 'solvay.jpg'),
    join(faces!, 'edge', 'multi_face', 'couple.jpg'),
    join(faces!, 'edge', 'large', 'img40.jpg'),
  );
  return Promise.all(
    files.map(async (file): Promise<[string, Buffer]> => [file, await readFile(file)]),
  );
}

test(
  'fast path enabled after setup',
  { skip: expectEnabled ? false : 'fast path not expected here' },
  () => {
    assert.equal(fastJpegStatus.enabled, true, JSON.stringify(fastJpegStatus));
  },
);

test('plain JPEG decodes as sharp does', { skip }, async () => {
  let fast = 0;
  for (const [file, bytes] of await samplePhotos()) {
    const header = readJpegHeader(bytes);
    assert.ok(header, `${file}: header not read`);
    const plain = isPlainJpeg(header, limits.maxImagePixels);
    const direct = decodePlainJpeg(bytes, limits.maxImagePixels);
    if (fastJpegStatus.enabled) assert.equal(direct !== undefined, plain, file);
    if (direct) fast += 1;

    const image = await decodeImage(bytes, limits);
    const expected = await sharpRgb(bytes);
    assert.equal(image.data.length, expected.length, file);
    assert.ok(Buffer.from(image.data).equals(expected), `${file}: pixels differ from sharp's`);
  }
  if (fastJpegStatus.enabled) assert.ok(fast >= 10, `only ${fast} photos took the fast path`);
});

test('progressive and grayscale JPEG are plain', { skip }, async () => {
  const photo = await readFile(join(faces!, 'edge', 'multi_face', 'couple.jpg'));
  const progressive = await sharp(photo).jpeg({ progressive: true, quality: 85 }).toBuffer();
  const gray = await sharp(photo).toColourspace('b-w').jpeg({ quality: 85 }).toBuffer();

  for (const bytes of [progressive, gray]) {
    const header = readJpegHeader(bytes)!;
    assert.ok(isPlainJpeg(header, limits.maxImagePixels), JSON.stringify(header));
    const image = await decodeImage(bytes, limits);
    assert.ok(Buffer.from(image.data).equals(await sharpRgb(bytes)));
  }
  assert.equal(readJpegHeader(progressive)!.frameMarker, 0xc2);
  assert.equal(readJpegHeader(gray)!.components, 1);
});

test('rotated, CMYK, ICC-tagged JPEG go to sharp', { skip }, async () => {
  const rotated = await readFile(
    join(faces!, 'edge', 'exif_orientation', 'portrait-orientation-6.jpg'),
  );
  const photo = await readFile(join(faces!, 'edge', 'multi_face', 'couple.jpg'));
  const cmyk = await sharp(photo).toColourspace('cmyk').jpeg().toBuffer();
  const tagged = await sharp(photo).withIccProfile('p3').jpeg().toBuffer();

  assert.equal(readJpegHeader(rotated)!.orientation, 6);
  assert.equal(readJpegHeader(cmyk)!.components, 4);
  assert.equal(readJpegHeader(cmyk)!.hasAdobeMarker, true);
  assert.equal(readJpegHeader(tagged)!.hasIccProfile, true);
  for (const bytes of [rotated, cmyk, tagged]) {
    assert.equal(isPlainJpeg(readJpegHeader(bytes)!, limits.maxImagePixels), false);
    assert.equal(decodePlainJpeg(bytes, limits.maxImagePixels), undefined);
    const image = await decodeImage(bytes, limits);
    assert.ok(Buffer.from(image.data).equals(await sharpRgb(bytes)));
  }
});

test('damaged or oversized JPEG rejected', { skip }, async () => {
  const photo = await readFile(join(faces!, 'edge', 'multi_face', 'couple.jpg'));
  const truncated = photo.subarray(0, Math.floor(photo.length / 2));
  const header = readJpegHeader(photo)!;

  assert.equal(decodePlainJpeg(truncated, limits.maxImagePixels), undefined);
  assert.equal(decodePlainJpeg(photo, header.width * header.height - 1), undefined);
  assert.equal(readJpegHeader(photo.subarray(0, 40)), undefined);
  assert.equal(readJpegHeader(Buffer.from('not a jpeg at all')), undefined);
  // A corrupt length field must not send the scan out of the buffer.
  const broken = Buffer.from(photo.subarray(0, 64));
  broken[4] = 0xff;
  broken[5] = 0xff;
  assert.equal(readJpegHeader(broken), undefined);
});
