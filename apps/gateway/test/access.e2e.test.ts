// Access control and erasure on the running stack: two gateways, two matchers, the
// processes connected to PostgreSQL as a role that may not change the schema.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { FACES_MISSING, facesDir, findRepoRoot } from '@facegate/config';
import { type Database, createDatabase, decodeEmbedding } from '@facegate/db';
import {
  Stack,
  TEST_DATABASE_URL,
  call,
  dumpSchema,
  findVector,
  freePort,
} from '@facegate/testing';

import { ROUTES } from '../src/openapi.js';
import { TestStreamClient } from './stream-client.js';

const run = promisify(execFile);
const faces = facesDir();
const stack = new Stack();

const KEYS = {
  recognize: 'e2e-recognize-key-0001',
  enrol: 'e2e-enrol-key-00000001',
  admin: 'e2e-admin-key-00000001',
  all: 'e2e-every-scope-key-01',
} as const;
const API_KEYS = `${KEYS.recognize}:recognize,${KEYS.enrol}:enrol,${KEYS.admin}:admin,${KEYS.all}:recognize+enrol+admin`;
const RATE_PER_SECOND = 10;
const BURST = 30;

/** Keys created during the run; no log line may contain one. */
const createdKeys: string[] = [];
/** Embeddings seen during the run; no log line may contain one. */
const seenEmbeddings: Float32Array[] = [];

let secondGateway = '';
let secondIndexDir = '';
let owner: Database;

const photo = (name: string, n: number): string =>
  join(faces!, 'lfw', name, `${name}_${String(n).padStart(4, '0')}.jpg`);
const headers = (key: string): Record<string, string> => ({ 'x-api-key': key });
const wsUrl = (base: string): string => `${base.replace('http', 'ws')}/api/v1/stream`;

async function waitFor<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function createKey(scopes: string[]): Promise<{ id: string; key: string }> {
  const created = await call(stack, 'POST', '/api/v1/keys', {
    json: { name: `e2e ${scopes.join('+')}`, scopes },
    headers: headers(KEYS.admin),
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  createdKeys.push(created.json.key);
  return { id: created.json.id, key: created.json.key };
}

/** Reads every file of a matcher's index folder; a temporary file renamed meanwhile is skipped. */
async function indexFiles(dir: string): Promise<Buffer> {
  const names = await readdir(dir);
  const contents = await Promise.all(
    names.map((name) => readFile(join(dir, name)).catch(() => Buffer.alloc(0))),
  );
  return Buffer.concat(contents);
}

describe(
  'access control and erasure on the running stack',
  { skip: faces ? false : FACES_MISSING, timeout: 600_000 },
  () => {
    before(async () => {
      await stack.start({
        workers: 1,
        restrictedRole: true,
        env: {
          API_KEYS,
          RATE_LIMIT_PER_SECOND: String(RATE_PER_SECOND),
          RATE_LIMIT_BURST: String(BURST),
          MATCH_LOG_RETENTION_DAYS: '1',
          BATCH_SOURCE_ROOTS: tmpdir(),
          LOG_LEVEL: 'debug',
        },
      });
      const port = await freePort();
      secondGateway = `http://127.0.0.1:${port}`;
      stack.spawn('gateway', 'gateway-2', 0, { PORT: String(port) });
      secondIndexDir = await mkdtemp(join(tmpdir(), 'facegate-index-2-'));
      stack.spawn('matcher', 'matcher-2', await freePort(), { INDEX_DIR: secondIndexDir });
      await waitFor(
        async () => {
          const ready = await fetch(`${secondGateway}/ready`).catch(() => undefined);
          const body = (await ready?.json().catch(() => undefined)) as
            | { checks?: { matcher?: { ready?: number } } }
            | undefined;
          return ready?.status === 200 && body?.checks?.matcher?.ready === 2 ? true : undefined;
        },
        60_000,
        'the second gateway and matcher are ready',
      );
      owner = createDatabase({ url: TEST_DATABASE_URL, schema: stack.schema, maxConnections: 2 });
    });

    after(async () => {
      await owner?.close();
      await stack.stopAll();
      await rm(secondIndexDir, { recursive: true, force: true });
    });

    test('the processes run as the restricted role', async () => {
      const rows = await owner.sql<{ usename: string }[]>`
        select distinct usename from pg_stat_activity
        where application_name = 'facegate' and usename = ${stack.role}`;

      assert.equal(rows.length, 1);
    });

    test('health, readiness and metrics need no key', async () => {
      for (const path of ['/health', '/ready', '/metrics']) {
        const response = await fetch(`${stack.url}${path}`);
        assert.equal(response.status, 200, path);
      }
      const ready = await call(stack, 'GET', '/ready');
      assert.equal(ready.json.auth, 'keys');
      assert.equal(ready.json.checks.auth.ok, true);
    });

    test('each scope is enforced on each route family', async () => {
      const callers: [string, Record<string, string>][] = [
        ['no key', {}],
        ['unknown key', headers('e2e-unknown-key-0000001')],
        ['recognize', headers(KEYS.recognize)],
        ['enrol', { authorization: `Bearer ${KEYS.enrol}` }],
        ['admin', headers(KEYS.admin)],
      ];
      const mismatches: string[] = [];
      const table: string[] = [];

      for (const route of ROUTES) {
        if (!route.scope) continue;
        const path = route.path
          .replace('/keys/{id}', '/keys/aaaaaaaaaaaa')
          .replace('{id}', '00000000-0000-4000-8000-000000000000')
          .replace('{faceId}', '1');
        const statuses: number[] = [];
        for (const [name, callerHeaders] of callers) {
          const { status } = await call(stack, route.method.toUpperCase(), path, {
            headers: callerHeaders,
          });
          statuses.push(status);
          const expected =
            name === 'no key' || name === 'unknown key'
              ? 'exactly 401'
              : name === route.scope
                ? 'not 401, 403 or 429'
                : 'exactly 403';
          const ok =
            expected === 'exactly 401'
              ? status === 401
              : expected === 'exactly 403'
                ? status === 403
                : ![401, 403, 429].includes(status);
          if (!ok)
            mismatches.push(
              `${route.method} ${route.path} with ${name}: ${status}, expected ${expected}`,
            );
        }
        table.push(
          `${route.method.padEnd(6)} ${route.path.padEnd(40)} ${route.scope.padEnd(9)} ${statuses.join(' ')}`,
        );
      }

      assert.ok(table.length >= 20, table.join('\n'));
      assert.deepEqual(mismatches, [], table.join('\n'));
    });

    test('a stream needs a key with the recognize scope', async () => {
      const url = wsUrl(stack.url);

      const byHeader = await TestStreamClient.open(url, { headers: headers(KEYS.recognize) });
      const wrongScope = await TestStreamClient.reject(url, { headers: headers(KEYS.enrol) });
      const unknown = await TestStreamClient.reject(url, {
        headers: headers('e2e-unknown-key-0000001'),
      });
      const byMessage = await TestStreamClient.open(url);
      byMessage.send({ type: 'auth', api_key: KEYS.recognize });
      const welcome = await byMessage.waitFor((message) => message.type === 'authenticated');
      const noAuth = await TestStreamClient.open(url);
      noAuth.send({ type: 'config', mode: 'detect' });
      const noAuthClose = await noAuth.closed;

      assert.ok(byHeader.open);
      assert.equal(wrongScope.status, 403);
      assert.equal(wrongScope.body.error.code, 'FORBIDDEN');
      assert.equal(unknown.status, 401);
      assert.equal(welcome.key_id, 'env-1');
      assert.equal(noAuthClose.code, 4401);
      assert.equal(noAuth.messages[0]?.error.code, 'UNAUTHENTICATED');
      byMessage.send({ type: 'config', mode: 'detect' });
      const result = await byMessage.request(await readFile(photo('Aaron_Peirsol', 1)), 1);
      assert.equal(result.type, 'result', JSON.stringify(result));
      await byHeader.close();
      await byMessage.close();
    });

    test('batches read neither service tables nor files outside the roots', async () => {
      const sources = [
        {
          type: 'table',
          table: `${stack.schema}.api_keys`,
          idColumn: 'id',
          nameColumn: 'name',
          imageColumn: 'name',
          imageEncoding: 'path',
        },
        {
          type: 'table',
          table: 'pg_catalog.pg_class',
          idColumn: 'relname',
          nameColumn: 'relname',
          imageColumn: 'relname',
          imageEncoding: 'path',
        },
        { type: 'manifest', path: '/etc/passwd' },
        { type: 'directory', path: `${tmpdir()}/../etc` },
      ];

      for (const source of sources) {
        const response = await call(stack, 'POST', '/api/v1/batches', {
          json: { source },
          headers: headers(KEYS.enrol),
        });
        assert.equal(
          response.status,
          400,
          `${JSON.stringify(source)}: ${JSON.stringify(response.json)}`,
        );
        assert.equal(response.json.error.code, 'INVALID_REQUEST');
      }
    });

    test('a NUL character is a 400, not a database error', async () => {
      const visitor = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'a\u0000b' },
        headers: headers(KEYS.enrol),
      });
      const metadata = await call(stack, 'POST', '/api/v1/visitors', {
        json: { name: 'ok', metadata: { note: '\u0000' } },
        headers: headers(KEYS.enrol),
      });
      const key = await call(stack, 'POST', '/api/v1/keys', {
        json: { name: 'x\u0000', scopes: ['admin'] },
        headers: headers(KEYS.admin),
      });

      for (const response of [visitor, metadata, key]) {
        assert.equal(response.status, 400, JSON.stringify(response.json));
        assert.match(response.json.error.message, /NUL character/);
      }
    });

    test('messages right after the auth message are kept', async () => {
      const stream = await TestStreamClient.open(wsUrl(stack.url));

      stream.send({ type: 'auth', api_key: KEYS.recognize });
      stream.send({ type: 'config', mode: 'detect' });
      stream.sendFrame(await readFile(photo('Aaron_Peirsol', 1)), { frame_id: 'early' });
      const result = await stream.waitFor((message) => message.frame_id === 'early');

      assert.equal(result.type, 'result', JSON.stringify(stream.messages));
      assert.equal(result.faces.length, 1);
      await stream.close();
    });

    test('a revoked key stops working within a second on every gateway', async (t) => {
      const { id, key } = await createKey(['recognize', 'enrol']);
      const bases = [stack.url, secondGateway];
      for (const baseUrl of bases) {
        await waitFor(
          async () => {
            const { status } = await call(stack, 'GET', '/api/v1/visitors?limit=1', {
              headers: headers(key),
              baseUrl,
            });
            return status === 200 ? true : undefined;
          },
          1000,
          `the new key works on ${baseUrl}`,
        );
      }
      const streams = await Promise.all(
        bases.map((baseUrl) => TestStreamClient.open(wsUrl(baseUrl), { headers: headers(key) })),
      );

      // Revoked through the CLI, which writes to PostgreSQL only: the gateways learn it from the database.
      const root = findRepoRoot();
      await run(process.execPath, [join(root, 'apps/cli/dist/src/main.js'), 'keys', 'revoke', id], {
        env: { ...stack.env },
      });
      const revokedAt = Date.now();
      const rejectedAfterMs = await Promise.all(
        bases.map((baseUrl) =>
          waitFor(
            async () => {
              const { status } = await call(stack, 'GET', '/api/v1/visitors?limit=1', {
                headers: headers(key),
                baseUrl,
              });
              return status === 401 ? Date.now() - revokedAt : undefined;
            },
            5000,
            `the revoked key is rejected by ${baseUrl}`,
          ),
        ),
      );
      const closes = await Promise.all(streams.map((stream) => stream.closed));
      const closedAfterMs = Date.now() - revokedAt;

      t.diagnostic(
        `rejected after ${rejectedAfterMs.join(' and ')} ms, streams closed after ${closedAfterMs} ms`,
      );
      for (const elapsedMs of rejectedAfterMs) assert.ok(elapsedMs < 1000, `took ${elapsedMs} ms`);
      assert.deepEqual(
        closes.map((close) => close.code),
        [4401, 4401],
      );
      assert.ok(closedAfterMs < 1000, `streams closed after ${closedAfterMs} ms`);
    });

    test('the rate limit holds across two gateways', async (t) => {
      const { key } = await createKey(['enrol']);
      // The other gateway learns of the new key from a notification, a few ms later. The
      // request that shows it (403: the key is known but lacks admin) spends one token.
      await waitFor(
        async () => {
          const response = await fetch(`${secondGateway}/api/v1/audit?limit=1`, {
            headers: headers(key),
          });
          return response.status === 403 ? true : undefined;
        },
        1000,
        'the second gateway knows the new key',
      );
      const started = Date.now();

      const responses = await Promise.all(
        Array.from({ length: 2 * BURST }, (_, i) =>
          call(stack, 'GET', '/api/v1/visitors?limit=1', {
            headers: headers(key),
            baseUrl: i % 2 === 0 ? stack.url : secondGateway,
          }),
        ),
      );
      const elapsedSeconds = (Date.now() - started) / 1000;
      const allowed = responses.filter((response) => response.status === 200).length;
      const limited = responses.filter((response) => response.status === 429);

      t.diagnostic(`${allowed} of ${responses.length} allowed in ${elapsedSeconds} s`);
      // Each gateway counting alone would have let all 60 through.
      assert.ok(allowed >= BURST - 1, `${allowed} allowed`);
      assert.ok(
        allowed <= BURST - 1 + Math.ceil(RATE_PER_SECOND * elapsedSeconds) + 1,
        `${allowed} allowed in ${elapsedSeconds} s`,
      );
      assert.deepEqual(
        responses
          .map((response) => response.status)
          .filter((status) => status !== 200 && status !== 429),
        [],
      );
      for (const response of limited) {
        assert.equal(response.json.error.code, 'RATE_LIMITED');
        assert.ok(Number(response.headers.get('retry-after')) >= 1);
      }
    });

    test('erasing a visitor leaves nothing behind in the database or any index', async (t) => {
      // A batch enrols the visitor, so batch items name it too.
      const source = await mkdtemp(join(tmpdir(), 'facegate-erasure-'));
      t.after(() => rm(source, { recursive: true, force: true }));
      await mkdir(join(source, 'Erasure_Visitor'));
      await copyFile(photo('Aaron_Peirsol', 1), join(source, 'Erasure_Visitor', 'first.jpg'));
      const batch = await call(stack, 'POST', '/api/v1/batches', {
        json: { source: { type: 'directory', path: source } },
        headers: headers(KEYS.enrol),
      });
      assert.equal(batch.status, 202, JSON.stringify(batch.json));
      await waitFor(
        async () => {
          const report = await call(stack, 'GET', `/api/v1/batches/${batch.json.id}`, {
            headers: headers(KEYS.enrol),
          });
          return report.json.status === 'completed' ? report.json : undefined;
        },
        60_000,
        'the batch completes',
      );
      const [visitor] = await owner.sql<[{ id: string }]>`
        select id from ${owner.sql(owner.schema)}.visitors where external_id = 'Erasure_Visitor'`;
      const enrolled = await call(stack, 'POST', `/api/v1/visitors/${visitor.id}/faces`, {
        image: await readFile(photo('Aaron_Peirsol', 2)),
        headers: headers(KEYS.enrol),
      });
      assert.equal(enrolled.status, 201, JSON.stringify(enrolled.json));
      const recognized = await call(stack, 'POST', '/api/v1/recognize', {
        image: await readFile(photo('Aaron_Peirsol', 3)),
        headers: headers(KEYS.recognize),
      });
      assert.equal(recognized.json.faces[0]?.match?.visitorId, visitor.id);

      const stored = await owner.sql<{ embedding: Buffer; dim: number; image_sha256: Buffer }[]>`
        select embedding, dim, image_sha256 from ${owner.sql(owner.schema)}.faces
        where visitor_id = ${visitor.id}`;
      const embeddings = stored.map((row) => decodeEmbedding(row.embedding, row.dim));
      seenEmbeddings.push(...embeddings);
      assert.equal(embeddings.length, 2);
      // Both matchers have saved both faces: the checks below can fail.
      for (const dir of [stack.indexDir, secondIndexDir]) {
        await waitFor(
          async () => {
            const bytes = await indexFiles(dir);
            return embeddings.every((embedding) => findVector(bytes, embedding) !== -1)
              ? true
              : undefined;
          },
          10_000,
          `the index in ${dir} holds the faces`,
        );
      }
      const traces = [
        'Erasure_Visitor',
        ...stored.map((row) => row.image_sha256.toString('hex')),
        ...stored.map((row) => row.embedding.toString('hex')),
      ];
      const beforeText = [...(await dumpSchema(owner)).values()].join('\n');
      for (const trace of traces) assert.ok(beforeText.includes(trace), `${trace} missing before`);

      const erased = await call(stack, 'DELETE', `/api/v1/visitors/${visitor.id}`, {
        headers: headers(KEYS.enrol),
      });

      assert.equal(erased.status, 204, JSON.stringify(erased.json));
      for (const [table, text] of await dumpSchema(owner)) {
        for (const trace of traces)
          assert.ok(!text.includes(trace), `${table} still holds ${trace}`);
        if (table !== 'audit_log')
          assert.ok(!text.includes(visitor.id), `${table} still holds the visitor id`);
      }
      for (const dir of [stack.indexDir, secondIndexDir]) {
        const bytes = await indexFiles(dir);
        for (const embedding of embeddings) assert.equal(findVector(bytes, embedding), -1, dir);
        assert.ok(!bytes.toString('latin1').includes(visitor.id), `${dir} names the visitor`);
      }
      const again = await call(stack, 'POST', '/api/v1/recognize', {
        image: await readFile(photo('Aaron_Peirsol', 3)),
        headers: headers(KEYS.recognize),
      });
      assert.notEqual(again.json.faces[0]?.match?.visitorId, visitor.id);
      const audit = await call(stack, 'GET', '/api/v1/audit?limit=1000', {
        headers: headers(KEYS.admin),
      });
      const actions = audit.json.items.map((entry: { action: string; keyId: string }) => [
        entry.action,
        entry.keyId,
      ]);
      for (const expected of [
        ['batch.start', 'env-2'],
        ['face.enrol', 'env-2'],
        ['visitor.delete', 'env-2'],
        ['key.revoke', 'cli'],
      ])
        assert.ok(
          actions.some(
            (action: string[]) => action[0] === expected[0] && action[1] === expected[1],
          ),
          `${expected.join(' by ')} missing from ${JSON.stringify(actions)}`,
        );
    });

    test('no log line contains a key or an embedding', () => {
      const lines = [...stack.logs.values()].flatMap((chunks) => chunks.join('').split('\n'));
      const secrets = [...Object.values(KEYS), ...createdKeys];
      const embeddingTexts = seenEmbeddings.flatMap((embedding) => {
        const bytes = Buffer.from(embedding.buffer, embedding.byteOffset, embedding.byteLength);
        return [
          bytes.toString('base64').slice(0, 24),
          bytes.toString('hex').slice(0, 32),
          Array.from(embedding.slice(0, 3), String).join(','),
        ];
      });

      // The logs are there to search: debug lines name the keys by id.
      assert.ok(lines.length > 100, `${lines.length} log lines`);
      assert.ok(lines.some((line) => line.includes('"keyId":"env-1"')));
      assert.ok(seenEmbeddings.length > 0);
      assert.ok(createdKeys.length > 0);
      for (const line of lines) {
        for (const secret of secrets)
          assert.ok(!line.includes(secret), `a log line holds a key: ${line}`);
        for (const text of embeddingTexts)
          assert.ok(!line.includes(text), `a log line holds an embedding: ${line}`);
      }
    });
  },
);
