import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  FACES_MISSING,
  facesDir,
  findRepoRoot,
  inferenceConcurrency,
  loadConfig,
} from '@facegate/config';
import { BATCH_ITEMS_PER_JOB } from '@facegate/contracts';
import { type Database, createDatabase, findOrCreateVisitor, insertFace } from '@facegate/db';
import { Stack, TEST_DATABASE_URL, call } from '@facegate/testing';

const faces = facesDir();
const root = findRepoRoot();
const stack = new Stack();

/** Photos per person: 62 people x 9 = 558 photos keeps each batch near 20 s on one worker. */
const PHOTOS_PER_PERSON = 9;
const TERMINAL = new Set(['completed', 'cancelled', 'failed']);

interface Photo {
  person: string;
  file: string;
  path: string;
}

/** People listed in both people_min5.txt and people_min20.txt, each with their first photos. */
async function samplePhotos(): Promise<Photo[]> {
  const list = async (name: string): Promise<string[]> =>
    (await readFile(join(faces!, 'lfw-meta', name), 'utf8')).split('\n').filter(Boolean);
  const min20 = new Set(await list('people_min20.txt'));
  const people = (await list('people_min5.txt')).filter((person) => min20.has(person)).sort();

  const photos: Photo[] = [];
  for (const person of people) {
    const files = (await readdir(join(faces!, 'lfw', person))).sort().slice(0, PHOTOS_PER_PERSON);
    for (const file of files)
      photos.push({ person, file, path: join(faces!, 'lfw', person, file) });
  }
  return photos;
}

/**
 * Builds `<tmp>/<name>/<prefix><Person>/<photo>` with symbolic links to the photos, plus
 * a truncated JPEG and a photo without a face, each in a folder of its own.
 */
async function buildDirectory(
  workDir: string,
  name: string,
  prefix: string,
  photos: Photo[],
): Promise<string> {
  const dir = join(workDir, name);
  for (const photo of photos) {
    await mkdir(join(dir, `${prefix}${photo.person}`), { recursive: true });
    await symlink(photo.path, join(dir, `${prefix}${photo.person}`, photo.file));
  }
  const corrupt = (await readFile(join(faces!, 'edge', 'multi_face', 'couple.jpg'))).subarray(
    0,
    300_000,
  );
  await mkdir(join(dir, `${prefix}Corrupt_Image`));
  await writeFile(join(dir, `${prefix}Corrupt_Image`, 'corrupt.jpg'), corrupt);
  await mkdir(join(dir, `${prefix}No_Face`));
  await symlink(
    join(faces!, 'edge', 'no_face', 'silver_fir.jpg'),
    join(dir, `${prefix}No_Face`, 'silver_fir.jpg'),
  );
  // Two entries that are not photos: reported as ignored, outside the item counts.
  await writeFile(join(dir, 'README.txt'), 'one folder per visitor');
  await writeFile(join(dir, `${prefix}No_Face`, 'notes.txt'), 'not a photo');
  return dir;
}

async function postBatch(body: unknown): Promise<string> {
  const response = await call(stack, 'POST', '/api/v1/batches', { json: body });
  assert.equal(response.status, 202, JSON.stringify(response.json));
  assert.equal(response.json.status, 'planning');
  return response.json.id as string;
}

async function waitForBatch(id: string, timeoutMs = 180_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = await call(stack, 'GET', `/api/v1/batches/${id}`);
    assert.equal(response.status, 200, JSON.stringify(response.json));
    if (TERMINAL.has(response.json.status)) return response.json;
    if (Date.now() > deadline) {
      throw new Error(
        `batch ${id} not finished: ${JSON.stringify(response.json)}\n${stack.dumpLogs()}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

async function allItems(id: string): Promise<any[]> {
  const items: any[] = [];
  let cursor: string | null = null;
  do {
    const query: string = cursor ? `?limit=1000&cursor=${cursor}` : '?limit=1000';
    const page = await call(stack, 'GET', `/api/v1/batches/${id}/items${query}`);
    assert.equal(page.status, 200, JSON.stringify(page.json));
    items.push(...page.json.items);
    cursor = page.json.nextCursor;
  } while (cursor);
  return items;
}

function assertCountsAddUp(report: any): void {
  const parts = [
    'facesStored',
    'noFace',
    'multipleFaces',
    'tooSmall',
    'failed',
    'skipped',
    'pending',
  ];
  const sum = parts.reduce((total, part) => total + (report[part] as number), 0);
  assert.equal(sum, report.total, JSON.stringify(report));
  assert.equal(report.done, report.total - report.pending);
}

function runCli(
  args: string[],
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [join(root, 'apps', 'cli', 'dist', 'src', 'main.js'), ...args],
      {
        env: { ...process.env, LOG_LEVEL: 'silent' },
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe(
  'bulk extraction on the running stack (62 LFW people of min5 and min20, 9 photos each)',
  { skip: faces ? false : FACES_MISSING, timeout: 540_000 },
  () => {
    let workDir: string;
    let photos: Photo[];
    let db: Database;
    let directory: string;
    let directoryReport: any;

    const countFaces = async (): Promise<number> => {
      const [row] = await db.sql<
        { count: string }[]
      >`select count(*) from ${db.sql(db.schema)}.faces`;
      return Number(row!.count);
    };

    before(async () => {
      workDir = await mkdtemp(join(tmpdir(), 'facegate-batch-'));
      photos = await samplePhotos();
      directory = await buildDirectory(workDir, 'people', '', photos);
      await stack.start({ workers: 1 });
      db = createDatabase({ url: TEST_DATABASE_URL, schema: stack.schema, maxConnections: 2 });
    });

    after(async () => {
      await db?.close();
      await stack.stopAll();
      await rm(workDir, { recursive: true, force: true });
    });

    test('directory batch completes with exact counts', async () => {
      const id = await postBatch({ source: { type: 'directory', path: directory } });

      const report = await waitForBatch(id);

      directoryReport = report;
      assert.equal(report.status, 'completed');
      assert.equal(report.total, photos.length + 2);
      assertCountsAddUp(report);
      assert.equal(report.pending, 0);
      assert.equal(report.failed, 1);
      assert.equal(report.noFace, 1);
      assert.ok(report.facesStored > photos.length / 2, JSON.stringify(report));
      assert.equal(report.modelId, 'mobilefacenet_foamliu_128d_int8');
      assert.deepEqual(
        report.failures.map((failure: any) => [failure.item, failure.code]),
        [['Corrupt_Image/corrupt.jpg', 'IMAGE_CORRUPT']],
      );
      const items = await allItems(id);
      const corrupt = items.find((item) => item.item === 'Corrupt_Image/corrupt.jpg');
      assert.equal(corrupt.status, 'failed');
      assert.equal(corrupt.attempts, 1);
      const noFace = items.find((item) => item.item === 'No_Face/silver_fir.jpg');
      assert.equal(noFace.status, 'no_face');
      assert.equal(noFace.code, 'NO_FACE');
      assert.equal(report.ignored, 2);
      assert.deepEqual(
        items.filter((item) => item.status === 'ignored').map((item) => [item.item, item.code]),
        [
          ['No_Face/notes.txt', 'NOT_AN_IMAGE'],
          ['README.txt', 'OUTSIDE_VISITOR_FOLDER'],
        ],
      );
      assert.equal(await countFaces(), report.facesStored);
      assert.ok(report.finishedAt);
      // The schema is new, so every visitor in it was created by this batch.
      const [audit] = await db.sql<{ visitors: number; entries: number }[]>`
        select (select count(*)::int from ${db.sql(db.schema)}.visitors) as visitors,
          (select count(*)::int from ${db.sql(db.schema)}.audit_log
           where action = 'visitor.create' and details->>'batchId' = ${id}) as entries`;
      assert.ok(audit!.visitors > 0);
      assert.equal(audit!.entries, audit!.visitors, 'each visitor the batch created is audited');
    });

    test('item listing filters by status and pages', async () => {
      const id = directoryReport.id as string;

      const failed = await call(stack, 'GET', `/api/v1/batches/${id}/items?status=failed`);
      const firstPage = await call(stack, 'GET', `/api/v1/batches/${id}/items?status=done&limit=5`);
      const secondPage = await call(
        stack,
        'GET',
        `/api/v1/batches/${id}/items?status=done&limit=5&cursor=${firstPage.json.nextCursor}`,
      );

      assert.equal(failed.status, 200);
      assert.deepEqual(
        failed.json.items.map((item: any) => item.code),
        ['IMAGE_CORRUPT'],
      );
      assert.equal(firstPage.json.items.length, 5);
      assert.ok(
        firstPage.json.items.every((item: any) => item.status === 'done' && item.faceId > 0),
      );
      assert.ok(secondPage.json.items[0].item > firstPage.json.items[4].item);
    });

    test('batch list includes the finished batch', async () => {
      const id = directoryReport.id as string;

      const list = await call(stack, 'GET', '/api/v1/batches?status=completed&limit=5');
      const running = await call(stack, 'GET', '/api/v1/batches?status=running');
      const badLimit = await call(stack, 'GET', '/api/v1/batches?limit=1000');
      const badCursor = await call(stack, 'GET', '/api/v1/batches?cursor=xyz');
      const unknownParameter = await call(stack, 'GET', '/api/v1/batches?sort=name');

      assert.equal(list.status, 200, JSON.stringify(list.json));
      const listed = list.json.items.find((batch: any) => batch.id === id);
      const summary = { ...directoryReport };
      delete summary.failures;
      assert.deepEqual(listed, summary);
      assert.equal(running.status, 200);
      assert.ok(running.json.items.every((batch: any) => batch.status === 'running'));
      for (const response of [badLimit, badCursor, unknownParameter]) {
        assert.equal(response.status, 400, JSON.stringify(response.json));
        assert.equal(response.json.error.code, 'INVALID_REQUEST');
      }
    });

    test('invalid batch requests get 400 or 404', async () => {
      const table = {
        type: 'table',
        idColumn: 'id',
        nameColumn: 'name',
        imageColumn: 'photo',
        imageEncoding: 'bytea',
      };
      const bad: [string, unknown][] = [
        ['relative path', { source: { type: 'directory', path: 'photos' } }],
        ['unknown source type', { source: { type: 's3', path: '/x' } }],
        ['unknown field', { source: { type: 'directory', path: '/x' }, priority: 1 }],
        ['bad multipleFaces', { source: { type: 'directory', path: '/x' }, multipleFaces: 'all' }],
        [
          'injection in table',
          { source: { ...table, table: 'public.visitors; drop table faces' } },
        ],
        [
          'injection in column',
          { source: { ...table, table: 'visitors', idColumn: 'id, pg_sleep(5)' } },
        ],
        ['quote in quoted table', { source: { ...table, table: '"visitors"" --"' } }],
        ['missing table', { source: { ...table, table: 'no_such_table_here' } }],
      ];

      for (const [name, body] of bad) {
        const response = await call(stack, 'POST', '/api/v1/batches', { json: body });
        assert.equal(response.status, 400, `${name}: ${JSON.stringify(response.json)}`);
        assert.equal(response.json.error.code, 'INVALID_REQUEST', name);
      }
      const unknown = await call(
        stack,
        'GET',
        `/api/v1/batches/00000000-0000-4000-8000-000000000000`,
      );
      const badStatus = await call(
        stack,
        'GET',
        `/api/v1/batches/${directoryReport.id}/items?status=odd`,
      );
      assert.equal(unknown.status, 404);
      assert.equal(badStatus.status, 400);
    });

    test('CSV manifest of the same photos gives the same outcomes', async () => {
      const rows = ['externalId,name,image'];
      for (const [index, photo] of photos.entries()) {
        // Half relative to the manifest's folder, half absolute; names need CSV quoting.
        const image = index % 2 === 0 ? `people/${photo.person}/${photo.file}` : photo.path;
        rows.push(`csv-${photo.person},"${photo.person.replace(/_/g, ', ')} ""CSV""",${image}`);
      }
      rows.push(`csv-Corrupt,Corrupt,people/Corrupt_Image/corrupt.jpg`);
      rows.push(`csv-No_Face,No face,${join(faces!, 'edge', 'no_face', 'silver_fir.jpg')}`);
      rows.push('csv-Missing_Image,Missing,');
      const manifest = join(workDir, 'manifest.csv');
      await writeFile(manifest, `${rows.join('\r\n')}\r\n`);

      const id = await postBatch({ source: { type: 'manifest', path: manifest } });
      const report = await waitForBatch(id);

      assert.equal(report.status, 'completed');
      assert.equal(report.total, photos.length + 3);
      assertCountsAddUp(report);
      assert.equal(report.facesStored, directoryReport.facesStored);
      assert.equal(report.multipleFaces, directoryReport.multipleFaces);
      assert.equal(report.noFace, 1);
      assert.deepEqual(report.failures.map((failure: any) => failure.code).sort(), [
        'IMAGE_CORRUPT',
        'INVALID_REQUEST',
      ]);
      const person = photos[0]!.person;
      const [visitor] = await db.sql<{ name: string }[]>`
        select name from ${db.sql(db.schema)}.visitors where external_id = ${`csv-${person}`}`;
      assert.equal(visitor?.name, `${person.replace(/_/g, ', ')} "CSV"`);
    });

    test('JSON Lines manifest enrols its rows', async () => {
      const chosen = photos.filter((_, index) => index % PHOTOS_PER_PERSON === 0).slice(0, 3);
      const lines = chosen.map((photo) =>
        JSON.stringify({
          externalId: `jsonl-${photo.person}`,
          name: photo.person,
          image: photo.path,
        }),
      );
      const manifest = join(workDir, 'manifest.jsonl');
      await writeFile(manifest, `${lines.join('\n')}\nnot json\n`);

      const id = await postBatch({
        source: { type: 'manifest', path: manifest },
        multipleFaces: 'largest',
      });
      const report = await waitForBatch(id);

      assert.equal(report.status, 'completed');
      assert.equal(report.total, 4);
      assert.equal(report.facesStored, 3);
      assert.deepEqual(report.failures, [
        { item: 'line 4', code: 'INVALID_REQUEST', message: 'line 4 is not valid JSON' },
      ]);
    });

    test('table sources with bytea and base64 images', async () => {
      const sourceSchema = `batch_source_${randomBytes(6).toString('hex')}`;
      const { sql } = db;
      const chosen = photos.filter((_, index) => index % PHOTOS_PER_PERSON === 1).slice(0, 3);
      await sql`create schema ${sql(sourceSchema)}`;
      try {
        await sql`create table ${sql(sourceSchema)}."Visitor" (
          "VisitorId" serial primary key, "FullName" text not null, "Photo" bytea)`;
        await sql`create table ${sql(sourceSchema)}.visitor_b64 (id text primary key, name text, photo text)`;
        for (const photo of chosen) {
          const bytes = await readFile(photo.path);
          await sql`insert into ${sql(sourceSchema)}."Visitor" ("FullName", "Photo") values (${photo.person}, ${bytes})`;
          await sql`insert into ${sql(sourceSchema)}.visitor_b64 values (${`b64-${photo.person}`}, ${photo.person}, ${bytes.toString('base64')})`;
        }

        const byteaId = await postBatch({
          source: {
            type: 'table',
            table: `${sourceSchema}."Visitor"`,
            idColumn: '"VisitorId"',
            nameColumn: '"FullName"',
            imageColumn: '"Photo"',
            imageEncoding: 'bytea',
          },
          multipleFaces: 'largest',
        });
        const base64Id = await postBatch({
          source: {
            type: 'table',
            table: `${sourceSchema}.visitor_b64`,
            idColumn: 'id',
            nameColumn: 'name',
            imageColumn: 'photo',
            imageEncoding: 'base64',
          },
          multipleFaces: 'centre',
        });
        const injection = await call(stack, 'POST', '/api/v1/batches', {
          json: {
            source: {
              type: 'table',
              table: `${sourceSchema}."Visitor"; drop table ${sourceSchema}.visitor_b64; --`,
              idColumn: 'id',
              nameColumn: 'name',
              imageColumn: 'photo',
              imageEncoding: 'bytea',
            },
          },
        });
        const bytea = await waitForBatch(byteaId);
        const base64 = await waitForBatch(base64Id);

        assert.equal(injection.status, 400);
        assert.equal(injection.json.error.code, 'INVALID_REQUEST');
        const policies = await sql<{ id: string; multiple_faces: string }[]>`
          select id, multiple_faces from ${sql(db.schema)}.batches
          where id in (${byteaId}, ${base64Id})`;
        assert.deepEqual(Object.fromEntries(policies.map((row) => [row.id, row.multiple_faces])), {
          [byteaId]: 'largest',
          [base64Id]: 'centre',
        });
        for (const report of [bytea, base64]) {
          assert.equal(report.status, 'completed');
          assert.equal(report.total, 3);
          assert.equal(report.facesStored, 3, JSON.stringify(report));
        }
        const visitors = await sql<{ external_id: string; name: string }[]>`
          select external_id, name from ${sql(db.schema)}.visitors
          where external_id in ('1', '2', '3') order by external_id`;
        assert.deepEqual(
          visitors.map((visitor) => [visitor.external_id, visitor.name]),
          chosen.map((photo, index) => [String(index + 1), photo.person]),
        );
        const [tableLeft] = await sql`select to_regclass(${`${sourceSchema}.visitor_b64`}) as oid`;
        assert.ok(tableLeft?.oid, 'the injection attempt dropped nothing');
      } finally {
        await sql`drop schema if exists ${sql(sourceSchema)} cascade`;
      }
    });

    test('worker killed mid-batch processes every item once', async () => {
      const killDir = await buildDirectory(workDir, 'kill', 'kill-', photos);
      const id = await postBatch({ source: { type: 'directory', path: killDir } });
      const deadline = Date.now() + 60_000;
      for (;;) {
        const progress = await call(stack, 'GET', `/api/v1/batches/${id}`);
        if (progress.json.done >= 60) break;
        assert.ok(
          Date.now() < deadline,
          `batch made no progress: ${JSON.stringify(progress.json)}`,
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }

      await stack.stop('worker-1', 'SIGKILL');
      stack.spawn('worker', 'worker-2');
      const report = await waitForBatch(id);

      assert.equal(report.status, 'completed');
      assertCountsAddUp(report);
      assert.equal(report.facesStored, directoryReport.facesStored);
      assert.equal(report.skipped, 0);
      const items = (await allItems(id)).filter((item) => item.status !== 'ignored');
      assert.ok(items.every((item) => item.attempts >= 1));
      // Only the items of the jobs in flight on the killed worker (at most its concurrency,
      // each with up to BATCH_ITEMS_PER_JOB items) ran twice.
      const concurrency = inferenceConcurrency(loadConfig(stack.env));
      assert.ok(
        items.filter((item) => item.attempts > 1).length <= concurrency * BATCH_ITEMS_PER_JOB,
        JSON.stringify(items.filter((item) => item.attempts > 1)),
      );
      const [stored] = await db.sql<{ faces: string; images: string }[]>`
        select count(*) as faces, count(distinct (f.visitor_id, f.image_sha256)) as images
        from ${db.sql(db.schema)}.faces f join ${db.sql(db.schema)}.visitors v on v.id = f.visitor_id
        where v.external_id like 'kill-%'`;
      assert.equal(Number(stored!.faces), report.facesStored);
      assert.equal(Number(stored!.images), report.facesStored);
    });

    test('second run of the same source stores nothing', async () => {
      const facesBefore = await countFaces();

      const id = await postBatch({ source: { type: 'directory', path: directory } });
      const report = await waitForBatch(id);

      assert.equal(report.status, 'completed');
      assert.equal(report.facesStored, 0);
      assert.equal(report.skipped, directoryReport.facesStored);
      assert.equal(report.multipleFaces, directoryReport.multipleFaces);
      assert.equal(await countFaces(), facesBefore);
    });

    test('index size equals the stored faces after batches', async () => {
      const stored = await countFaces();

      let index: any;
      for (let attempt = 0; attempt < 50; attempt += 1) {
        index = (await call(stack, 'GET', '/api/v1/index')).json;
        if (index.size === stored) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }

      assert.equal(index.size, stored);
      assert.equal(index.state, 'ready');
    });

    test('cancel stops a running batch', async () => {
      const cancelDir = await buildDirectory(workDir, 'cancel', 'cancel-', photos);
      const id = await postBatch({ source: { type: 'directory', path: cancelDir } });

      const cancelled = await call(stack, 'DELETE', `/api/v1/batches/${id}`);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const later = await call(stack, 'GET', `/api/v1/batches/${id}`);
      const again = await call(stack, 'DELETE', `/api/v1/batches/${id}`);
      const finished = await call(stack, 'DELETE', `/api/v1/batches/${directoryReport.id}`);

      assert.equal(cancelled.status, 200, JSON.stringify(cancelled.json));
      assert.equal(cancelled.json.status, 'cancelled');
      assert.equal(later.json.status, 'cancelled');
      // Items already taken by a worker when the cancel arrived may still finish.
      assert.ok(
        later.json.done <= cancelled.json.done + 2,
        `${later.json.done} > ${cancelled.json.done} + 2`,
      );
      assert.ok(later.json.total < photos.length + 2 || later.json.pending > 0);
      assert.equal(again.status, 200);
      assert.equal(finished.status, 409);
      assert.equal(finished.json.error.code, 'CONFLICT');
    });

    test('CLI follows a batch and exits 1 on a failed item', async () => {
      const small = await buildDirectory(workDir, 'cli', 'cli-', photos.slice(0, 4));

      const run = await runCli([
        'batch',
        'directory',
        small,
        '--url',
        stack.url,
        '--poll-interval-ms',
        '200',
      ]);
      const usage = await runCli(['batch', 'table', '--table', 'visitors', '--url', stack.url]);
      const status = await runCli(['batch', 'status', directoryReport.id, '--url', stack.url]);

      assert.equal(run.status, 1, run.stderr);
      const report = JSON.parse(run.stdout);
      assert.equal(report.status, 'completed');
      assert.equal(report.total, 6);
      assert.equal(report.failed, 1);
      assert.match(run.stderr, /items\/s ETA/);
      assert.equal(usage.status, 2, usage.stderr);
      assert.equal(status.status, 0, status.stderr);
      assert.equal(JSON.parse(status.stdout).id, directoryReport.id);
    });

    test('re-extraction replaces faces of an old model', async () => {
      // Three people's photos get a face of an older model, as if enrolled before a model change.
      const people = [...new Set(photos.map((photo) => photo.person))].slice(0, 3);
      const items = await allItems(directoryReport.id);
      const single = (person: string): Photo[] =>
        photos.filter(
          (photo) =>
            photo.person === person &&
            items.find((item) => item.item === `${person}/${photo.file}`)?.status === 'done',
        );
      const reDir = join(workDir, 'reextract');
      let oldFaces = 0;
      for (const person of people) {
        const [first, second, extra] = single(person);
        assert.ok(first, `${person} has a first one-face photo`);
        assert.ok(second, `${person} has a second one-face photo`);
        assert.ok(extra, `${person} has a third one-face photo`);
        const visitor = await findOrCreateVisitor(db, `re-${person}`, person);
        await mkdir(join(reDir, `re-${person}`), { recursive: true });
        for (const photo of [first, second]) {
          const bytes = await readFile(photo.path);
          const embedding = new Float32Array(128).map((_, i) => Math.sin(i + oldFaces));
          await insertFace(db, {
            visitorId: visitor.id,
            modelId: 'old_model_128d',
            embedding,
            detectionScore: 0.9,
            box: null,
            faceSize: 100,
            imageSha256: createHash('sha256').update(bytes).digest(),
          });
          oldFaces += 1;
        }
        for (const photo of [first, second, extra])
          await symlink(photo.path, join(reDir, `re-${person}`, photo.file));
      }
      let refusing: any;
      for (let attempt = 0; attempt < 50; attempt += 1) {
        refusing = (await call(stack, 'GET', '/api/v1/index')).json;
        if (refusing.state === 'refusing') break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }

      const id = await postBatch({ source: { type: 'directory', path: reDir }, mode: 'reextract' });
      const report = await waitForBatch(id);

      assert.equal(refusing.state, 'refusing');
      assert.equal(report.status, 'completed');
      assert.equal(report.mode, 'reextract');
      assert.equal(report.facesStored, oldFaces);
      assert.equal(report.skipped, people.length);
      const [old] = await db.sql<{ count: string }[]>`
        select count(*) from ${db.sql(db.schema)}.faces where model_id = 'old_model_128d'`;
      assert.equal(Number(old!.count), 0);
      let index: any;
      for (let attempt = 0; attempt < 50; attempt += 1) {
        index = (await call(stack, 'GET', '/api/v1/index')).json;
        if (index.state === 'ready' && index.size === (await countFaces())) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.equal(index.state, 'ready');
      assert.equal(index.size, await countFaces());
    });
  },
);
