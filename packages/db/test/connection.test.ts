import assert from 'node:assert/strict';
import type { AddressInfo, Socket } from 'node:net';
import { createServer } from 'node:net';
import { after, test } from 'node:test';

import { FaceGateError } from '@facegate/errors';
import postgres from 'postgres';

import {
  createDatabase,
  getVisitor,
  isDatabaseUnavailable,
  migrate,
  ping,
  toDatabaseError,
} from '../src/index.js';
import { DATABASE_URL, waitUntil } from './helpers.js';

const CLOSED_PORT_URL = 'postgres://postgres@127.0.0.1:1/test';

function isUnavailableFor(endpoint: string) {
  return (error: unknown) => {
    assert.ok(error instanceof FaceGateError);
    assert.equal(error.code, 'DEPENDENCY_UNAVAILABLE');
    assert.equal(error.status, 503);
    assert.match(error.message, /PostgreSQL/);
    assert.ok(error.message.includes(endpoint), error.message);
    assert.ok(isDatabaseUnavailable(error));
    return true;
  };
}

test('ping succeeds against the test server', async () => {
  const db = createDatabase({ url: DATABASE_URL });
  after(() => db.close());

  await ping(db);
});

test('closed port is DEPENDENCY_UNAVAILABLE', { timeout: 10_000 }, async () => {
  const db = createDatabase({ url: CLOSED_PORT_URL, connectTimeoutSeconds: 2 });
  after(() => db.close());

  await assert.rejects(ping(db), isUnavailableFor('127.0.0.1:1'));
  await assert.rejects(
    getVisitor(db, '00000000-0000-4000-8000-000000000000'),
    isUnavailableFor('127.0.0.1:1'),
  );
  await assert.rejects(migrate(db), isUnavailableFor('127.0.0.1:1'));
});

test('terminated backend is DEPENDENCY_UNAVAILABLE', { timeout: 10_000 }, async () => {
  const db = createDatabase({ url: DATABASE_URL, maxConnections: 1 });
  // A connection killed mid-query never finishes a graceful end in postgres 3.4.7.
  after(() => db.sql.end({ timeout: 0 }));
  const [{ pid }] = await db.sql<[{ pid: number }]>`select pg_backend_pid() as pid`;

  const sleeping = db.sql`select pg_sleep(30)`.catch((error: unknown) =>
    toDatabaseError(db, error),
  );
  const killer = createDatabase({ url: DATABASE_URL, maxConnections: 1 });
  try {
    // Terminating before the sleep starts would hit the idle connection instead.
    await waitUntil(async () => {
      const rows = await killer.sql`
        select 1 from pg_stat_activity
        where pid = ${pid} and state = 'active' and query like 'select pg_sleep%'`;
      return rows.length > 0;
    }, 'the sleep query is running');
    await killer.sql`select pg_terminate_backend(${pid})`;
  } finally {
    await killer.close();
  }
  const error = await sleeping;

  assert.ok(isUnavailableFor(db.endpoint)(error));
  assert.equal((error as FaceGateError).details?.code, '57P01');
});

/** Starts a TCP server on loopback that accepts connections and never replies. */
async function startSilentServer(): Promise<{ port: number; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

test('connect timeout is DEPENDENCY_UNAVAILABLE', { timeout: 10_000 }, async () => {
  const silent = await startSilentServer();
  const db = createDatabase({
    url: `postgres://postgres@127.0.0.1:${silent.port}/test`,
    connectTimeoutSeconds: 1,
  });
  after(async () => {
    await db.close();
    await silent.stop();
  });

  await assert.rejects(ping(db), (error) => {
    assert.ok(isUnavailableFor(`127.0.0.1:${silent.port}`)(error));
    assert.equal((error as FaceGateError).details?.code, 'CONNECT_TIMEOUT');
    return true;
  });
});

test('ping gives up after its timeout', { timeout: 10_000 }, async () => {
  const silent = await startSilentServer();
  const db = createDatabase({
    url: `postgres://postgres@127.0.0.1:${silent.port}/test`,
    connectTimeoutSeconds: 5,
  });
  after(async () => {
    await db.sql.end({ timeout: 0 });
    await silent.stop();
  });

  await assert.rejects(ping(db, 200), (error) => {
    assert.ok(isUnavailableFor(`127.0.0.1:${silent.port}`)(error));
    assert.match((error as FaceGateError).message, /did not respond to a ping within 200 ms/);
    return true;
  });
});

test('isDatabaseUnavailable classifies raw errors', () => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
    code: 'ECONNREFUSED',
  });
  const timeout = Object.assign(new Error('write CONNECT_TIMEOUT'), { code: 'CONNECT_TIMEOUT' });
  const shutdown = new postgres.PostgresError({ code: '57P01', message: 'terminating' } as never);
  const connectionFailure = new postgres.PostgresError({ code: '08006', message: 'lost' } as never);
  const badUuid = new postgres.PostgresError({ code: '22P02', message: 'invalid uuid' } as never);
  const uniqueViolation = new postgres.PostgresError({ code: '23505', message: 'dup' } as never);
  const aggregate = new AggregateError([refused], 'all addresses failed');

  assert.equal(isDatabaseUnavailable(refused), true);
  assert.equal(isDatabaseUnavailable(timeout), true);
  assert.equal(isDatabaseUnavailable(shutdown), true);
  assert.equal(isDatabaseUnavailable(connectionFailure), true);
  assert.equal(isDatabaseUnavailable(aggregate), true);
  assert.equal(isDatabaseUnavailable(badUuid), false);
  assert.equal(isDatabaseUnavailable(uniqueViolation), false);
  assert.equal(isDatabaseUnavailable(new Error('boom')), false);
  assert.equal(isDatabaseUnavailable(new FaceGateError('NOT_FOUND', 'gone')), false);
  assert.equal(isDatabaseUnavailable('ECONNREFUSED'), false);
});

test('createDatabase rejects bad pool options', () => {
  assert.throws(
    () => createDatabase({ url: DATABASE_URL, maxConnections: 0 }),
    (error: unknown) => error instanceof FaceGateError && error.code === 'CONFIG_INVALID',
  );
  assert.throws(
    () => createDatabase({ url: DATABASE_URL, connectTimeoutSeconds: -1 }),
    (error: unknown) => error instanceof FaceGateError && error.code === 'CONFIG_INVALID',
  );
});
