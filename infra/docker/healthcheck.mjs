#!/usr/bin/env node
// HEALTHCHECK of the facegate image. It finds which app this container runs
// from the command lines in /proc, then probes that app over loopback. The
// gateway serves GET /health on PORT. An inference worker or the matcher serves
// only GET /metrics, on METRICS_PORT. Exits 0 when the probe succeeds and 1
// otherwise, with the reason on stderr.
import { readFileSync, readdirSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const APPS = ['gateway', 'inference-worker', 'matcher'];
const PROBE_TIMEOUT_MS = 4000;

/** Returns the app whose entry point a process in this container runs, or undefined. */
export function findRunningApp(procDir = '/proc') {
  for (const pid of readdirSync(procDir)) {
    if (!/^\d+$/.test(pid)) continue;
    let commandLine;
    try {
      commandLine = readFileSync(`${procDir}/${pid}/cmdline`, 'utf8');
    } catch {
      continue; // the process exited between readdir and read
    }
    const app = APPS.find((name) => commandLine.includes(`apps/${name}/dist/src/main.js`));
    if (app) return app;
  }
  return undefined;
}

/** Returns the loopback URL that shows `app` is serving, or undefined when it serves none. */
export function probeUrl(app, env = process.env) {
  if (app === 'gateway') return `http://127.0.0.1:${env.PORT || 8000}/health`;
  const metricsPort = env.METRICS_PORT || '9464';
  return metricsPort === '0' ? undefined : `http://127.0.0.1:${metricsPort}/metrics`;
}

/** Requests `url` and returns undefined on a 2xx response, else the reason the probe failed. */
export async function probe(url, timeoutMs = PROBE_TIMEOUT_MS) {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel();
    return response.ok ? undefined : `${url} answered HTTP ${response.status}`;
  } catch (error) {
    return `${url} did not answer: ${error.cause?.message ?? error.message}`;
  }
}

async function main() {
  const app = findRunningApp();
  if (!app) {
    console.error('healthcheck: no gateway, inference-worker or matcher process is running');
    return 1;
  }
  const url = probeUrl(app);
  if (!url) return 0; // METRICS_PORT=0 turns the endpoint off, and the process is running
  const failure = await probe(url);
  if (failure) console.error(`healthcheck: ${app}: ${failure}`);
  return failure ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
