// Test harness: starts the real stack (matcher, inference workers, gateway) as
// child processes against the local PostgreSQL and Redis, in a schema and a
// Redis key prefix of its own, and removes both afterwards.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { constants as osConstants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { findRepoRoot } from '@facegate/config';
import { createDatabase } from '@facegate/db';
import { Redis } from 'ioredis';

const root = findRepoRoot();
export const TEST_DATABASE_URL =
  process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const ENTRIES = {
  matcher: 'apps/matcher/dist/src/main.js',
  worker: 'apps/inference-worker/dist/src/main.js',
  gateway: 'apps/gateway/dist/src/main.js',
} as const;

export type Role = keyof typeof ENTRIES;

/** The command line of an app as npm start builds it: its Node flags, and SCHED_BATCH where possible. */
const { appCommand } = (await import(
  pathToFileURL(join(root, 'scripts', 'app-command.mjs')).href
)) as {
  appCommand: (
    root: string,
    entry: string,
    env: Record<string, string | undefined>,
  ) => { command: string; args: string[] };
};

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

export interface StackOptions {
  workers?: number;
  env?: Record<string, string>;
  /** How long to wait for /ready; a matcher building a large index needs minutes. */
  readyTimeoutMs?: number;
  /**
   * Runs every process as a new login role with only the service's grants, while the
   * test database's owner migrates through DATABASE_MIGRATION_URL.
   */
  restrictedRole?: boolean;
}

export class Stack {
  readonly schema = `test_${randomBytes(6).toString('hex')}`;
  readonly prefix = `test-${randomBytes(6).toString('hex')}`;
  readonly processes = new Map<string, ChildProcess>();
  readonly logs = new Map<string, string[]>();
  /** METRICS_PORT of each worker and matcher process, by process name. */
  readonly metricsPorts = new Map<string, number>();
  port = 0;
  indexDir = '';
  /** The restricted role the processes run as, when started with restrictedRole. */
  role: string | null = null;
  env: Record<string, string> = {};

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(options: StackOptions = {}): Promise<void> {
    this.port = await freePort();
    this.indexDir = await mkdtemp(join(tmpdir(), 'facegate-index-'));
    let databaseUrl = this.env.DATABASE_URL ?? TEST_DATABASE_URL;
    const roleEnv: Record<string, string> = {};
    if (options.restrictedRole) {
      this.role = `${this.schema}_app`;
      const owner = createDatabase({
        url: TEST_DATABASE_URL,
        schema: this.schema,
        maxConnections: 1,
      });
      await owner.sql.unsafe(`create role "${this.role}" login`);
      await owner.close();
      const url = new URL(TEST_DATABASE_URL);
      url.username = this.role;
      url.password = '';
      databaseUrl = url.toString();
      roleEnv.DATABASE_MIGRATION_URL = TEST_DATABASE_URL;
    }
    this.env = {
      ...(process.env as Record<string, string>),
      ...roleEnv,
      DATABASE_URL: databaseUrl,
      REDIS_URL: TEST_REDIS_URL,
      DATABASE_SCHEMA: this.schema,
      QUEUE_PREFIX: this.prefix,
      INDEX_DIR: this.indexDir,
      PORT: String(this.port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      HEARTBEAT_INTERVAL_MS: '500',
      INDEX_PERSIST_DELAY_MS: '200',
      ...options.env,
    };
    this.spawn('matcher', 'matcher', await freePort());
    for (let i = 0; i < (options.workers ?? 1); i += 1)
      this.spawn('worker', `worker-${i + 1}`, await freePort());
    this.spawn('gateway');
    await this.waitReady(options.readyTimeoutMs);
  }

  spawn(
    role: Role,
    name: string = role,
    metricsPort = 0,
    env: Record<string, string> = {},
  ): ChildProcess {
    if (metricsPort) this.metricsPorts.set(name, metricsPort);
    const childEnv = { ...this.env, METRICS_PORT: String(metricsPort), ...env };
    const { command, args } = appCommand(root, ENTRIES[role], childEnv);
    const child = spawn(command, args, {
      cwd: root,
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    this.logs.set(name, lines);
    child.stdout.on('data', (chunk: Buffer) => lines.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => lines.push(chunk.toString()));
    this.processes.set(name, child);
    return child;
  }

  /** Stops one process with `signal` and resolves with its exit code. */
  async stop(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.processes.get(name);
    if (!child || child.exitCode !== null || child.signalCode !== null)
      return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    child.kill(signal);
    const code = await exited;
    this.processes.delete(name);
    return code;
  }

  async waitReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`${this.url}/ready`);
        last = await response.text();
        if (response.status === 200) return;
      } catch (error) {
        last = String(error);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`stack not ready after ${timeoutMs} ms: ${last}\n${this.dumpLogs()}`);
  }

  dumpLogs(): string {
    return [...this.logs]
      .map(([name, lines]) => `--- ${name}\n${lines.join('').slice(-3000)}`)
      .join('\n');
  }

  /**
   * Makes SIGINT and SIGTERM stop the stack (processes, schema, Redis keys, index files)
   * before the process exits with 128 + the signal number, so that a benchmark stopped with
   * Ctrl-C leaves nothing behind. Returns a function that removes the handlers.
   */
  stopOnSignals(): () => void {
    const handlers = (['SIGINT', 'SIGTERM'] as const).map((signal) => {
      const handler = (): void => {
        console.error(`${signal}: stopping the stack and removing its schema ${this.schema}`);
        const code = 128 + osConstants.signals[signal];
        this.stopAll().then(
          () => process.exit(code),
          (error: unknown) => {
            console.error(
              `stopping the stack failed; drop schema ${this.schema} and Redis keys ${this.prefix}:* by hand:`,
              error,
            );
            process.exit(code);
          },
        );
      };
      process.once(signal, handler);
      return [signal, handler] as const;
    });
    return () => {
      for (const [signal, handler] of handlers) process.off(signal, handler);
    };
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((name) => this.stop(name)));
    const db = createDatabase({ url: TEST_DATABASE_URL, schema: this.schema, maxConnections: 1 });
    await db.sql.unsafe(`drop schema if exists "${this.schema}" cascade`).catch(() => undefined);
    if (this.role) {
      await db.sql.unsafe(`drop owned by "${this.role}"`).catch(() => undefined);
      await db.sql.unsafe(`drop role if exists "${this.role}"`).catch(() => undefined);
    }
    await db.close();
    const redis = new Redis(TEST_REDIS_URL);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${this.prefix}:*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
    await redis.quit();
    await rm(this.indexDir, { recursive: true, force: true });
  }
}

/** A response as tests see it; `json` is untyped because each test asserts its shape. */
export interface CallResult {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
  headers: Headers;
}

/** Sends a request and returns status, parsed JSON body and headers. */
export async function call(
  stack: Stack,
  method: string,
  path: string,
  body?: {
    json?: unknown;
    image?: Buffer;
    form?: Record<string, Buffer | string>;
    raw?: Buffer;
    type?: string;
    /** Extra request headers, such as X-API-Key. */
    headers?: Record<string, string>;
    /** Another gateway of the stack; default `stack.url`. */
    baseUrl?: string;
  },
): Promise<CallResult> {
  const init: RequestInit = { method };
  if (body?.json !== undefined) {
    init.body = JSON.stringify(body.json);
    init.headers = { 'content-type': 'application/json' };
  } else if (body?.form) {
    const form = new FormData();
    for (const [key, value] of Object.entries(body.form)) {
      // A text field: FormData rejects a file name with a string value, even undefined.
      if (typeof value === 'string') form.append(key, value);
      else form.append(key, new Blob([value]), `${key}.jpg`);
    }
    init.body = form;
  } else if (body?.image) {
    const form = new FormData();
    form.append('image', new Blob([body.image]), 'image.jpg');
    init.body = form;
  } else if (body?.raw) {
    init.body = body.raw;
    init.headers = { 'content-type': body.type ?? 'image/jpeg' };
  }
  if (body?.headers)
    init.headers = { ...(init.headers as Record<string, string>), ...body.headers };
  const response = await fetch(`${body?.baseUrl ?? stack.url}${path}`, init);
  const text = await response.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: response.status, json, headers: response.headers };
}

/** Runs `work` over `items` with at most `concurrency` in flight. */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  concurrency: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const index = next;
        next += 1;
        results[index] = await work(items[index]!);
      }
    }),
  );
  return results;
}
