import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FACES_MISSING, facesDir, findRepoRoot, variables } from '@facegate/config';
import { QUEUE_NAMES, createQueues, keyNames } from '@facegate/contracts';
import { Stack, TEST_REDIS_URL, call, mapConcurrent } from '@facegate/testing';
import { Redis } from 'ioredis';

const faces = facesDir();
const root = findRepoRoot();

test('each app reports every invalid variable and exits 2', () => {
  for (const app of ['gateway', 'inference-worker', 'matcher']) {
    const result = spawnSync(
      process.execPath,
      [join(root, 'apps', app, 'dist', 'src', 'main.js')],
      {
        encoding: 'utf8',
        timeout: 20_000,
        env: {
          ...process.env,
          PORT: 'eighty',
          HNSW_M: '1',
          REDIS_URL: 'http://nope',
          LOG_LEVEL: 'loud',
        },
      },
    );

    assert.equal(result.status, 2, `${app}: ${result.stderr}`);
    for (const name of ['PORT', 'HNSW_M', 'REDIS_URL', 'LOG_LEVEL'])
      assert.match(result.stderr, new RegExp(name), `${app} omits ${name}`);
  }
});

test('README and .env.example list every variable', async () => {
  const readme = await readFile(join(root, 'README.md'), 'utf8');
  const example = await readFile(join(root, '.env.example'), 'utf8');

  for (const spec of Object.values(variables)) {
    const shown = spec.defaultLabel ?? spec.defaultValue ?? '(unset)';
    assert.ok(
      readme.includes(`| \`${spec.env}\` | \`${shown}\` |`),
      `README lacks ${spec.env} with default ${shown}`,
    );
    assert.ok(
      example.includes(`# ${spec.env}=${spec.defaultLabel ?? spec.defaultValue ?? ''}\n`),
      `.env.example lacks ${spec.env} with its default`,
    );
  }
});

describe(
  'graceful shutdown under load',
  { skip: faces ? false : FACES_MISSING, timeout: 240_000 },
  () => {
    const stack = new Stack();

    before(async () => {
      await stack.start({
        workers: 1,
        env: { REQUEST_TIMEOUT_MS: '60000', INFERENCE_CONCURRENCY: '2' },
      });
    });

    after(async () => {
      await stack.stopAll();
    });

    test('SIGTERM to a busy worker loses no enrolment and leaves no job active', async () => {
      const people = (await readFile(join(faces!, 'lfw-meta', 'people_min20.txt'), 'utf8'))
        .trim()
        .split('\n')
        .slice(0, 12);
      const visitors = await mapConcurrent(people, 4, async (line) => {
        const name = line.trim().split(/\s+/)[0]!;
        return {
          name,
          id: (await call(stack, 'POST', '/api/v1/visitors', { json: { name } })).json.id as string,
        };
      });
      const jobs = visitors.flatMap((visitor) => [1, 2].map((index) => ({ ...visitor, index })));

      const pending = mapConcurrent(jobs, 8, async ({ name, id, index }) => {
        const file = join(faces!, 'lfw', name, `${name}_${String(index).padStart(4, '0')}.jpg`);
        return (
          await call(stack, 'POST', `/api/v1/visitors/${id}/faces?multiple_faces=largest`, {
            image: await readFile(file),
          })
        ).status;
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      const exitCode = await stack.stop('worker-1', 'SIGTERM');
      stack.spawn('worker', 'worker-2');
      const statuses = await pending;

      const stored = await Promise.all(
        visitors.map(
          async (visitor) =>
            (await call(stack, 'GET', `/api/v1/visitors/${visitor.id}/faces`)).json.items.length,
        ),
      );
      const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
      const queues = createQueues(redis, keyNames(stack.prefix));
      const counts = await queues.inference.getJobCounts('active', 'waiting');
      await queues.close();
      await redis.quit();

      assert.equal(exitCode, 0);
      assert.deepEqual(
        statuses,
        jobs.map(() => 201),
      );
      assert.deepEqual(
        stored,
        visitors.map(() => 2),
      );
      assert.equal(counts.active, 0);
      assert.equal(counts.waiting, 0);
      assert.equal(QUEUE_NAMES.inference, 'inference');
    });
  },
);

describe(
  'request id across processes',
  { skip: faces ? false : FACES_MISSING, timeout: 120_000 },
  () => {
    const stack = new Stack();

    before(async () => {
      await stack.start({ workers: 1, env: { LOG_LEVEL: 'debug' } });
    });

    after(async () => {
      await stack.stopAll();
    });

    test('X-Request-Id appears in gateway, worker and matcher logs', async () => {
      const image = await readFile(
        join(faces!, 'identity-small', 'face_recognition_knn', 'test', 'obama1.jpg'),
      );
      const form = new FormData();
      form.append('image', new Blob([image]), 'obama1.jpg');

      const response = await fetch(`${stack.url}/api/v1/recognize`, {
        method: 'POST',
        body: form,
        headers: { 'x-request-id': 'trace-4242' },
      });
      await new Promise((resolve) => setTimeout(resolve, 300));

      assert.equal(response.status, 200);
      for (const name of ['gateway', 'worker-1', 'matcher']) {
        const lines = stack.logs
          .get(name)!
          .join('')
          .split('\n')
          .filter((line) => line.includes('"requestId":"trace-4242"'));
        assert.ok(lines.length > 0, `${name} logged nothing with the request id`);
        for (const line of lines)
          assert.doesNotThrow(() => JSON.parse(line), `${name} wrote a line that is not JSON`);
      }
    });
  },
);

/** Posts a raw JPEG to /api/v1/recognize; settles with the status and error code, or the socket error. */
function recognizeOn(
  agent: http.Agent,
  url: string,
  image: Buffer,
): Promise<{ status?: number; code?: string; socketError?: string }> {
  return new Promise((resolve) => {
    const request = http.request(
      `${url}/api/v1/recognize`,
      { method: 'POST', agent, headers: { 'content-type': 'image/jpeg' } },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
            error?: { code: string };
          };
          resolve({ status: response.statusCode, code: body.error?.code });
        });
      },
    );
    request.on('error', (error: NodeJS.ErrnoException) =>
      resolve({ socketError: error.code ?? error.message }),
    );
    request.end(image);
  });
}

describe(
  'worker stopped while starting',
  { skip: faces ? false : FACES_MISSING, timeout: 120_000 },
  () => {
    const stack = new Stack();

    before(async () => {
      await stack.start({ workers: 1 });
    });

    after(async () => {
      await stack.stopAll();
    });

    test('SIGTERM at any point of start-up exits 0', async () => {
      // After loading its models a worker connects to PostgreSQL and Redis and starts its
      // queue workers. The delays put the signal in different steps of that.
      for (const delayMs of [0, 5, 20, 50, 100, 250]) {
        const name = `late-${delayMs}`;
        stack.spawn('worker', name);
        const log = (): string => stack.logs.get(name)!.join('');
        const deadline = Date.now() + 30_000;
        while (!log().includes('models loaded') && Date.now() < deadline)
          await new Promise((resolve) => setTimeout(resolve, 2));
        await new Promise((resolve) => setTimeout(resolve, delayMs));

        const code = await stack.stop(name, 'SIGTERM');

        assert.equal(code, 0, `${name}: ${log().slice(-3000)}`);
        assert.match(log(), /"msg":"stopped"/, name);
      }
    });
  },
);

describe(
  'gateway shutdown with requests waiting',
  { skip: faces ? false : FACES_MISSING, timeout: 120_000 },
  () => {
    const stack = new Stack();

    before(async () => {
      // A deadline longer than the gateway's 15 s shutdown limit: only draining ends the wait.
      // Heartbeats a minute apart: the killed matcher below still counts as live, so the
      // gateway queues the requests instead of refusing them at once.
      await stack.start({
        workers: 1,
        env: { REQUEST_TIMEOUT_MS: '60000', HEARTBEAT_INTERVAL_MS: '60000' },
      });
    });

    after(async () => {
      await stack.stopAll();
    });

    test('SIGTERM drains waiting requests', async () => {
      const image = await readFile(
        join(faces!, 'identity-small', 'face_recognition_knn', 'test', 'obama1.jpg'),
      );
      const agent = new http.Agent({ keepAlive: true });
      assert.equal((await recognizeOn(agent, stack.url, image)).status, 200);
      // Without a matcher, recognize requests wait for a reply that cannot come.
      await stack.stop('matcher', 'SIGKILL');
      const waiting = Array.from({ length: 3 }, () => recognizeOn(agent, stack.url, image));
      await new Promise((resolve) => setTimeout(resolve, 1000));

      const exited = stack.stop('gateway', 'SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, 50));
      const late = await recognizeOn(agent, stack.url, image);
      const results = await Promise.all(waiting);
      const exitCode = await exited;
      agent.destroy();

      assert.deepEqual(
        results,
        waiting.map(() => ({ status: 503, code: 'NOT_READY' })),
      );
      // A request after the signal is refused: by the handler on a connection that was
      // still open, or by the closed listener.
      assert.ok(late.code === 'NOT_READY' || late.socketError !== undefined, JSON.stringify(late));
      assert.equal(exitCode, 0);
    });
  },
);

test('SIGTERM during the build stops start and the build', { timeout: 90_000 }, async () => {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [join(root, 'scripts', 'start.mjs')], {
    cwd: root,
    env: { ...process.env, PORT: '1', METRICS_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  // The build is the second step; turbo takes a second or more to check 15 packages, even
  // with every output cached. Its process, a child of start.mjs, is the cue.
  const deadline = Date.now() + 60_000;
  while (spawnSync('pgrep', ['-P', String(child.pid), '-f', 'turbo']).status !== 0) {
    assert.ok(Date.now() < deadline, `turbo did not start: ${output.slice(-2000)}`);
    assert.equal(child.exitCode, null, output.slice(-2000));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  child.kill('SIGTERM');

  const code = await exited;

  assert.equal(code, 0, output.slice(-2000));
  const stopped = /start: stopped during '[^']*turbo run build' \(process group (\d+)\)/.exec(
    output,
  );
  assert.ok(stopped, output.slice(-2000));
  // Nothing of the build is left running.
  assert.throws(() => process.kill(-Number(stopped[1]), 0), { code: 'ESRCH' });
});

/**
 * Returns "APP POLICY", sorted, for every app process that runs with QUEUE_PREFIX `prefix`:
 * the app's folder name and its scheduling policy (field 41 of /proc/PID/stat).
 */
/** Lists the app processes of the stack whose QUEUE_PREFIX is `prefix`, sorted by app name. */
function appProcesses(prefix: string): { app: string; pid: number; policy: string }[] {
  const found: { app: string; pid: number; policy: string }[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const entry = /apps\/([a-z-]+)\/dist\/src\/main\.js/.exec(
        readFileSync(`/proc/${pid}/cmdline`, 'utf8'),
      );
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      if (!entry || !environ.includes(`QUEUE_PREFIX=${prefix}`)) continue;
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const policy = stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[38]!;
      found.push({ app: entry[1]!, pid: Number(pid), policy });
    } catch {
      // The process ended between the listing and the reads.
    }
  }
  return found.sort((a, b) => a.app.localeCompare(b.app));
}

function appPolicies(prefix: string): string[] {
  return appProcesses(prefix).map(({ app, policy }) => `${app} ${policy}`);
}

const SCHED_OTHER = '0';
const SCHED_BATCH = '3';
const batchPossible = spawnSync('chrt', ['--batch', '0', 'true']).status === 0;

test(
  'npm start runs every process, restarts a killed one, and SIGTERM stops them all',
  { skip: faces ? false : FACES_MISSING, timeout: 120_000 },
  async () => {
    const { spawn } = await import('node:child_process');
    const { createServer } = await import('node:net');
    const freePort = (): Promise<number> =>
      new Promise((resolve) => {
        const server = createServer().listen(0, '127.0.0.1', () => {
          const { port } = server.address() as { port: number };
          server.close(() => resolve(port));
        });
      });
    const port = await freePort();
    // Workers take METRICS_PORT + 1 and + 2, so all three ports must be free.
    const canListen = (candidate: number): Promise<boolean> =>
      new Promise((resolve) => {
        const server = createServer();
        server.once('error', () => resolve(false));
        server.listen(candidate, '127.0.0.1', () => server.close(() => resolve(true)));
      });
    let metricsPort = await freePort();
    while (
      !(await canListen(metricsPort + 1)) ||
      !(await canListen(metricsPort + 2)) ||
      metricsPort + 2 > 65535
    ) {
      metricsPort = await freePort();
    }
    const schema = `test_start_${Date.now()}`;
    const prefix = `test-start-${Date.now()}`;
    const indexDir = join(tmpdir(), prefix);
    // The npm process itself gets the SIGTERM below, as a service manager would send it.
    const child = spawn('npm', ['start'], {
      cwd: root,
      env: {
        ...process.env,
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        INFERENCE_WORKERS: '2',
        DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
        DATABASE_SCHEMA: schema,
        QUEUE_PREFIX: prefix,
        INDEX_DIR: indexDir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));

    let ready = false;
    for (let i = 0; i < 120 && !ready; i += 1) {
      ready = await fetch(`http://127.0.0.1:${port}/ready`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    // /ready needs one ready worker; the other may still be starting its metrics server.
    let scrapes: number[] = [];
    for (let i = 0; i < 60; i += 1) {
      scrapes = await Promise.all(
        [0, 1, 2].map((offset) =>
          fetch(`http://127.0.0.1:${metricsPort + offset}/metrics`).then(
            (r) => r.status,
            () => 0,
          ),
        ),
      );
      if (scrapes.every((status) => status === 200)) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const policies = appPolicies(prefix);

    // A worker killed from outside is started again, and the stack keeps running.
    const workersBefore = appProcesses(prefix).filter(({ app }) => app === 'inference-worker');
    process.kill(workersBefore[0]!.pid, 'SIGKILL');
    let workersAfter: number[] = [];
    let readyAfter = false;
    for (let i = 0; i < 120; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      workersAfter = appProcesses(prefix)
        .filter(({ app }) => app === 'inference-worker')
        .map(({ pid }) => pid);
      const scraped = await Promise.all(
        [1, 2].map((offset) =>
          fetch(`http://127.0.0.1:${metricsPort + offset}/metrics`).then(
            (r) => r.status,
            () => 0,
          ),
        ),
      );
      readyAfter =
        workersAfter.length === 2 &&
        !workersAfter.includes(workersBefore[0]!.pid) &&
        scraped.every((status) => status === 200);
      if (readyAfter) break;
    }
    const gatewayUp = await fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => r.status,
      () => 0,
    );
    child.kill('SIGTERM');
    const code = await exited;

    const db = (await import('@facegate/db')).createDatabase({
      url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
      schema,
      maxConnections: 1,
    });
    await db.sql.unsafe(`drop schema if exists "${schema}" cascade`);
    await db.close();
    const redis = new Redis(TEST_REDIS_URL);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    await rm(indexDir, { recursive: true, force: true });
    assert.ok(ready, output.slice(-2000));
    assert.deepEqual(scrapes, [200, 200, 200]);
    assert.ok(readyAfter, `workers after the kill: ${workersAfter.join(', ')}`);
    assert.match(output, /start: worker-\d exited \(SIGKILL\); starting it again in 1 s/);
    assert.equal(gatewayUp, 200);
    // Where chrt may set it, every app runs under SCHED_BATCH (scripts/app-command.mjs).
    const policy = batchPossible ? SCHED_BATCH : SCHED_OTHER;
    assert.match(
      output,
      batchPossible
        ? /start: the apps run under SCHED_BATCH/
        : /start: chrt cannot set SCHED_BATCH/,
    );
    assert.deepEqual(
      policies,
      ['gateway', 'inference-worker', 'inference-worker', 'matcher'].map(
        (app) => `${app} ${policy}`,
      ),
    );
    assert.equal(code, 0, output.slice(-2000));
    for (const name of ['matcher', 'worker-1', 'worker-2', 'gateway'])
      assert.match(output, new RegExp(`${name}\\s+\\|.*"(stopped|matcher stopped)"`));
  },
);
