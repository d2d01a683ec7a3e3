import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import type { Database, NewBatchItem } from '@facegate/db';

import { fileError } from '../src/batch/files.js';
import { enumerateSource } from '../src/batch/sources.js';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'facegate-sources-'));
  await writeFile(join(root, 'notes.txt'), 'not a visitor');
  await mkdir(join(root, '.cache'));
  await symlink(join(root, 'no-such-folder'), join(root, 'Gone'));
  await mkdir(join(root, 'Alice', 'old'), { recursive: true });
  await writeFile(join(root, 'Alice', 'a.jpg'), 'bytes are read later, by the worker');
  await writeFile(join(root, 'Alice', 'b.txt'), 'text');
  await writeFile(join(root, 'Alice', '.c.jpg'), 'hidden');
  await symlink(join(root, 'no-such-photo.jpg'), join(root, 'Alice', 'missing.jpg'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Enumerates the test directory; a directory source never touches the database. */
async function enumerate(maxIgnoredItems?: number) {
  const counters = { ignored: 0 };
  const items: NewBatchItem[] = [];
  const source = { type: 'directory' as const, path: root };
  const noDatabase = undefined as unknown as Database;
  for await (const chunk of enumerateSource(noDatabase, source, 3, counters, [], maxIgnoredItems))
    items.push(...chunk);
  return { items, counters };
}

test('directory entries are photos or ignored', async () => {
  const { items, counters } = await enumerate();

  const photos = items.filter((item) => item.status === undefined);
  const ignored = items.filter((item) => item.status === 'ignored');
  assert.deepEqual(
    photos.map((item) => [item.key, item.externalId, item.locator]),
    [
      ['Alice/a.jpg', 'Alice', join(root, 'Alice', 'a.jpg')],
      ['Alice/missing.jpg', 'Alice', join(root, 'Alice', 'missing.jpg')],
    ],
  );
  assert.deepEqual(
    ignored.map((item) => [item.key, item.code]),
    [
      ['.cache/', 'HIDDEN_ENTRY'],
      ['Alice/.c.jpg', 'HIDDEN_ENTRY'],
      ['Alice/b.txt', 'NOT_AN_IMAGE'],
      ['Alice/old/', 'NESTED_FOLDER'],
      ['Gone', 'BROKEN_LINK'],
      ['notes.txt', 'OUTSIDE_VISITOR_FOLDER'],
    ],
  );
  assert.ok(ignored.every((item) => item.reason && item.locator?.startsWith(root)));
  assert.equal(counters.ignored, 6);
});

test('ignored items stop at the limit, counts go on', async () => {
  const { items, counters } = await enumerate(2);

  assert.equal(items.filter((item) => item.status === 'ignored').length, 2);
  assert.equal(items.filter((item) => item.status === undefined).length, 2);
  assert.equal(counters.ignored, 6);
});

test('missing file behind a link is named', () => {
  const enoent = Object.assign(new Error('ENOENT'), { code: 'ENOENT' });

  const link = fileError(enoent, join(root, 'Alice', 'missing.jpg'), 'image file');
  const plain = fileError(enoent, join(root, 'Alice', 'nothing.jpg'), 'image file');

  assert.equal(link.code, 'NOT_FOUND');
  assert.match(link.message, /is a symbolic link to .*no-such-photo\.jpg, which does not exist/);
  assert.equal(plain.code, 'NOT_FOUND');
  assert.match(plain.message, /nothing\.jpg does not exist$/);
});
