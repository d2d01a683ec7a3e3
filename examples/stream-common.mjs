// Helpers shared by the stream examples: the `ws` client from the gateway's
// dependencies (Node 20 has no WebSocket global without a flag), a loopback
// check on the target URL, and latency statistics.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../apps/gateway/package.json', import.meta.url));

/** Loads the `ws` package's WebSocket class from the dependencies of apps/gateway. */
export function loadWebSocket() {
  try {
    return require('ws');
  } catch (error) {
    throw new Error(
      `cannot load the 'ws' package from apps/gateway/node_modules (${error.message}); run pnpm install first`,
    );
  }
}

const LOOPBACK_HOSTS = new Set(['localhost', '[::1]']);

/** Parses a ws:// URL and rejects anything that is not on this machine's loopback interface. */
export function loopbackUrl(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Error(
      `invalid --url ${JSON.stringify(text)}; expected ws://127.0.0.1:PORT/api/v1/stream`,
    );
  }
  if (url.protocol !== 'ws:') throw new Error(`--url must start with ws://, got ${url.protocol}//`);
  if (!LOOPBACK_HOSTS.has(url.hostname) && !/^127(\.\d{1,3}){3}$/.test(url.hostname)) {
    throw new Error(
      `--url host ${url.hostname} is not a loopback address; only 127.0.0.0/8, ::1 and localhost are allowed`,
    );
  }
  return url;
}

/** Nearest-rank percentile of `values` (milliseconds); NaN for an empty list. */
export function percentile(values, fraction) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(fraction * sorted.length));
  return sorted[rank - 1];
}

export function formatMs(value) {
  return Number.isFinite(value) ? value.toFixed(1) : '-';
}

/** Parses a number option and checks its range, naming the flag in the error. */
export function numberOption(values, name, fallback, min, max) {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max)
    throw new Error(`--${name} must be a number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return value;
}
