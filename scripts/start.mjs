#!/usr/bin/env node
// Starts the whole stack on this machine as separate processes: the matcher,
// INFERENCE_WORKERS inference workers (default 1) and the gateway, after running
// the setup (when needed) and the build. Ctrl-C or SIGTERM stops all of them, or the
// setup or build step while it runs. An app that exits on its own (a crash, an
// out-of-memory kill) is started again after a delay that doubles while it keeps failing
// soon after each start, from 1 s up to 30 s. One that exits with code 2 (invalid
// configuration, which a restart cannot fix) stops the others, and this script exits 2.
// `npm start` execs this script, so the SIGINT or SIGTERM that npm forwards reaches
// it, and it stops the stack as well when its parent process goes away. Each app can
// also run alone: `node apps/<app>/dist/src/main.js`, configured by environment.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { appCommand, schedulingPolicy } from './app-command.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

/** The apps' processes by name, once they are started. */
const children = new Map();
let stopping = false;
/** The preparation step running now, which a signal stops. */
let preparing = null;
let stopRequested = false;

/**
 * Runs a preparation step with node in a process group of its own, so that a signal can
 * stop it and whatever it started (a compiler, tsc). Exits with the step's code when it
 * fails, and with 0 when a signal stopped it.
 */
function prepare(script, args) {
  const step = `${script} ${args.join(' ')}`;
  return new Promise((resolve) => {
    preparing = spawn(process.execPath, [join(root, script), ...args], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit'],
      detached: true,
    });
    preparing.on('exit', async (code, signal) => {
      const group = preparing.pid;
      preparing = null;
      if (stopRequested) {
        await waitForGroupExit(group);
        console.error(`start: stopped during '${step}' (process group ${group})`);
        process.exit(0);
      }
      if (code !== 0) {
        console.error(`start: '${step}' failed (${signal ?? `exit code ${code}`})`);
        process.exit(code ?? 1);
      }
      resolve();
    });
  });
}

/**
 * Waits until no process of `group` is left: the step's own children (turbo's native
 * binary, a compiler) may outlive it while they stop. Kills what remains after 10 s.
 */
async function waitForGroupExit(group) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      process.kill(-group, 0);
    } catch {
      return;
    }
    if (Date.now() > deadline) {
      process.kill(-group, 'SIGKILL');
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Stops the preparation step, or the apps once they run. */
function onStopSignal() {
  stopRequested = true;
  if (preparing) {
    try {
      process.kill(-preparing.pid, 'SIGTERM');
    } catch {
      // The group has exited already; its 'exit' event ends this process.
    }
    return;
  }
  if (children.size === 0) process.exit(0);
  stopAll('SIGTERM');
}
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, onStopSignal);

const workers = Number(process.env.INFERENCE_WORKERS || 1);
if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
  console.error(
    `start: INFERENCE_WORKERS must be an integer from 1 to 64, got '${process.env.INFERENCE_WORKERS}'`,
  );
  process.exit(2);
}

await prepare('scripts/setup.mjs', ['--if-needed']);
await prepare('node_modules/turbo/bin/turbo', ['run', 'build']);

// Each process serves /metrics on a port of its own: the matcher on METRICS_PORT
// (default 9464), worker N on METRICS_PORT + N, the gateway on its API port.
const metricsBase = Number(process.env.METRICS_PORT || 9464);
const apps = [
  {
    name: 'matcher',
    entry: 'apps/matcher/dist/src/main.js',
    env: { METRICS_PORT: String(metricsBase) },
  },
  ...Array.from({ length: workers }, (_, i) => ({
    name: `worker-${i + 1}`,
    entry: 'apps/inference-worker/dist/src/main.js',
    env: { METRICS_PORT: metricsBase === 0 ? '0' : String(metricsBase + i + 1) },
  })),
  { name: 'gateway', entry: 'apps/gateway/dist/src/main.js', env: {} },
];

let exitCode = 0;

/** First restart delay of an app that exited on its own. It doubles up to RESTART_MAX_DELAY_MS. */
const RESTART_DELAY_MS = 1000;
const RESTART_MAX_DELAY_MS = 30_000;
/** An app that ran at least this long before it exited is restarted after the first delay again. */
const RESTART_RESET_AFTER_MS = 60_000;
/** Exit code of an app whose configuration is invalid (loadConfigOrExit). */
const CONFIG_ERROR_EXIT_CODE = 2;
/** Pending restarts by app name, cancelled when the stack stops. */
const restarts = new Map();

function prefixLines(stream, name, target) {
  createInterface({ input: stream }).on('line', (line) =>
    target.write(`${name.padEnd(9)} | ${line}\n`),
  );
}

function stopAll(signal) {
  if (stopping) return;
  stopping = true;
  for (const timer of restarts.values()) clearTimeout(timer);
  restarts.clear();
  if (children.size === 0) process.exit(exitCode);
  for (const child of children.values()) child.kill(signal);
  // Every app shuts down within its own bounded time; this is the backstop.
  setTimeout(() => {
    for (const child of children.values()) child.kill('SIGKILL');
  }, 20_000).unref();
}

/** Starts `app`. `delayMs` is the delay before its next restart, should it exit on its own. */
function startApp(app, delayMs = RESTART_DELAY_MS) {
  const { command, args } = appCommand(root, app.entry);
  const startedAt = Date.now();
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...app.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.set(app.name, child);
  prefixLines(child.stdout, app.name, process.stdout);
  prefixLines(child.stderr, app.name, process.stderr);
  child.on('exit', (code, signal) => {
    children.delete(app.name);
    const reason = signal ?? `code ${code}`;
    if (stopping) {
      if (code !== 0 && code !== null) exitCode = exitCode || code;
      if (children.size === 0) process.exit(exitCode);
      return;
    }
    if (code === CONFIG_ERROR_EXIT_CODE) {
      console.error(
        `start: ${app.name} exited (${reason}): invalid configuration; stopping the others`,
      );
      exitCode = CONFIG_ERROR_EXIT_CODE;
      stopAll('SIGTERM');
      return;
    }
    const delay = Date.now() - startedAt >= RESTART_RESET_AFTER_MS ? RESTART_DELAY_MS : delayMs;
    console.error(`start: ${app.name} exited (${reason}); starting it again in ${delay / 1000} s`);
    restarts.set(
      app.name,
      setTimeout(() => {
        restarts.delete(app.name);
        startApp(app, Math.min(delay * 2, RESTART_MAX_DELAY_MS));
      }, delay),
    );
  });
}

for (const app of apps) startApp(app);

// A parent killed without passing the signal on (npm through a shell that does not
// exec, or npm killed with SIGKILL) leaves this process to init. Then the stack stops too.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) {
    console.error(`start: parent process ${parent} is gone; stopping`);
    stopAll('SIGTERM');
  }
}, 1000).unref();
console.log(
  `start: matcher, ${workers} inference worker(s) and gateway starting; Ctrl-C stops them`,
);
console.log(
  schedulingPolicy() === 'batch'
    ? 'start: the apps run under SCHED_BATCH (FACEGATE_SCHED_BATCH=off for the default policy)'
    : process.env.FACEGATE_SCHED_BATCH === 'off'
      ? 'start: the apps run under the default scheduling policy (FACEGATE_SCHED_BATCH=off)'
      : 'start: chrt cannot set SCHED_BATCH here, so the apps run under the default scheduling policy',
);
