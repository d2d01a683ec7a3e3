import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';

import { FileReader } from '../src/batch/file-reader.js';

let dir: string;
let reader: FileReader;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'facegate-file-reader-'));
  reader = new FileReader();
});

after(async () => {
  await reader.close();
  await rm(dir, { recursive: true, force: true });
});

function codeOf(result: Buffer | FaceGateError | undefined): string {
  if (result instanceof FaceGateError) return result.code;
  return result === undefined ? 'undefined' : `${result.length} bytes`;
}

test('file reader reports errors per file', async () => {
  const inside = join(dir, 'inside');
  await mkdir(inside);
  const photo = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
  await writeFile(join(inside, 'photo.jpg'), photo);
  await writeFile(join(inside, 'empty.jpg'), Buffer.alloc(0));
  await writeFile(join(inside, 'big.jpg'), Buffer.alloc(2001, 1));
  await writeFile(join(dir, 'outside.jpg'), photo);
  await symlink(join(dir, 'outside.jpg'), join(inside, 'link-out.jpg'));
  await symlink(join(inside, 'photo.jpg'), join(inside, 'link-in.jpg'));

  const paths = [
    join(inside, 'photo.jpg'),
    join(inside, 'missing.jpg'),
    join(inside, 'empty.jpg'),
    join(inside, 'big.jpg'),
    inside,
    join(inside, 'photo.jpg', 'below-a-file.jpg'),
  ];
  const anywhere = await reader.read(paths, 10_000, []);
  assert.equal(anywhere.length, paths.length);
  assert.deepEqual(anywhere[0], photo);
  assert.equal(codeOf(anywhere[1]), 'NOT_FOUND');
  assert.equal(codeOf(anywhere[2]), 'IMAGE_EMPTY');
  assert.equal(codeOf(anywhere[3]), '2001 bytes');
  assert.equal(codeOf(anywhere[4]), 'INVALID_REQUEST', 'a folder is not an image file');
  assert.equal(codeOf(anywhere[5]), 'INVALID_REQUEST', 'ENOTDIR');

  const limited = await reader.read([join(inside, 'big.jpg')], 2000, []);
  assert.equal(codeOf(limited[0]), 'IMAGE_TOO_LARGE');
  assert.match((limited[0] as FaceGateError).message, /2001 bytes; the limit is 2000/);

  const rooted = await reader.read(
    [
      join(inside, 'photo.jpg'),
      join(dir, 'outside.jpg'),
      join(inside, 'link-out.jpg'),
      join(inside, 'link-in.jpg'),
      join(inside, 'missing.jpg'),
    ],
    10_000,
    [inside],
  );
  assert.deepEqual(rooted[0], photo);
  assert.equal(codeOf(rooted[1]), 'INVALID_REQUEST');
  assert.equal(codeOf(rooted[2]), 'INVALID_REQUEST', 'a link that leads outside the roots');
  assert.deepEqual(rooted[3], photo, 'a link that stays inside the roots');
  assert.equal(codeOf(rooted[4]), 'NOT_FOUND');
});

test('file reader rejects a FIFO without waiting for a writer', async () => {
  const fifo = join(dir, 'pipe.jpg');
  execFileSync('mkfifo', [fifo]);
  const outcome = await Promise.race([
    reader.read([fifo], 10_000, []),
    new Promise((resolve) => setTimeout(resolve, 10_000, 'no answer')),
  ]);
  assert.ok(Array.isArray(outcome), `expected results, got ${String(outcome)}`);
  assert.equal(codeOf(outcome[0] as FaceGateError), 'INVALID_REQUEST');
  assert.match((outcome[0] as FaceGateError).message, /not a regular file/);
});

test('file reader reads the same file twice', async () => {
  // Any file will do: this test's compiled source is always there.
  const self = new URL(import.meta.url).pathname;
  const [first, second] = await reader.read([self, self], 1_000_000, []);
  const expected = await readFile(self);
  assert.deepEqual(first, expected);
  assert.deepEqual(second, expected);
});
