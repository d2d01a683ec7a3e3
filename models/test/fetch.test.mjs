import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { ModelFetchError, fetchModel } from '../fetch.mjs';

let scratch;
const content = Buffer.from('pretend this is an ONNX file'.repeat(100));
const entry = {
  name: 'tiny',
  file: 'tiny.onnx',
  bytes: content.length,
  sha256: createHash('sha256').update(content).digest('hex'),
  // Port 1 on loopback refuses at once: the download fallback fails without any traffic leaving the machine.
  url: 'http://127.0.0.1:1/tiny.onnx',
};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'facegate-fetch-'));
});

after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function dirs(name) {
  const mirror = join(scratch, name, 'mirror');
  const modelsDir = join(scratch, name, 'models');
  await import('node:fs/promises').then((fs) => fs.mkdir(mirror, { recursive: true }));
  return { mirror, modelsDir };
}

test('copies a valid file from the mirror', async () => {
  const { mirror, modelsDir } = await dirs('valid');
  await writeFile(join(mirror, entry.file), content);

  const how = await fetchModel(entry, { modelsDir, mirror });

  assert.equal(how, 'mirror');
  assert.deepEqual(await readFile(join(modelsDir, entry.file)), content);
  assert.equal(await fetchModel(entry, { modelsDir, mirror }), 'present');
});

test('truncated mirror file is rejected and nothing is left', async () => {
  const { mirror, modelsDir } = await dirs('truncated');
  await writeFile(join(mirror, entry.file), content.subarray(0, 10));

  await assert.rejects(
    fetchModel(entry, { modelsDir, mirror, downloadTimeoutMs: 5000 }),
    (error) => {
      assert.ok(error instanceof ModelFetchError);
      assert.match(error.message, /tiny\.onnx/);
      assert.match(error.message, new RegExp(entry.sha256));
      assert.match(error.message, /it has 10 bytes/);
      assert.match(error.message, new RegExp(mirror.replaceAll('/', '\\/')));
      return true;
    },
  );
  assert.deepEqual(await readdir(modelsDir), []);
});

test('mirror file with the wrong hash is rejected', async () => {
  const { mirror, modelsDir } = await dirs('wronghash');
  const tampered = Buffer.from(content);
  tampered[0] = tampered[0] ^ 0xff;
  await writeFile(join(mirror, entry.file), tampered);

  await assert.rejects(
    fetchModel(entry, { modelsDir, mirror, downloadTimeoutMs: 5000 }),
    /its sha256 is [0-9a-f]{64}, expected/,
  );
  assert.deepEqual(await readdir(modelsDir), []);
});

test('corrupt file in place is replaced from the mirror', async () => {
  const { mirror, modelsDir } = await dirs('replace');
  await writeFile(join(mirror, entry.file), content);
  await import('node:fs/promises').then((fs) => fs.mkdir(modelsDir, { recursive: true }));
  await writeFile(join(modelsDir, entry.file), 'garbage');

  assert.equal(await fetchModel(entry, { modelsDir, mirror }), 'mirror');
  assert.deepEqual(await readFile(join(modelsDir, entry.file)), content);
});

test('missing everywhere names every place tried', async () => {
  const { mirror, modelsDir } = await dirs('missing');

  await assert.rejects(
    fetchModel(entry, { modelsDir, mirror, downloadTimeoutMs: 5000 }),
    (error) => {
      assert.match(error.message, /not found in mirror/);
      assert.match(error.message, /download http:\/\/127\.0\.0\.1:1\/tiny\.onnx failed/);
      return true;
    },
  );
});
