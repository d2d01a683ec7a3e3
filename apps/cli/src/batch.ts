/**
 * `fr batch ...`: starts a bulk extraction on a running gateway over HTTP, follows it
 * with a progress line on stderr and prints the final report as JSON on stdout.
 * Exit status: 0 when every item ended without error, 1 when any item failed (or the
 * batch failed or was cancelled), 2 for invalid usage. Images with no face, several
 * faces or a too small face are outcomes, not failures: the report counts them.
 */

import type { Config } from '@facegate/config';
import { type ErrorCode, FaceGateError, isErrorCode } from '@facegate/errors';

import { parseArgs } from './commands.js';
import { userPath } from './paths.js';

export const BATCH_USAGE = `usage:
  fr batch directory <folder> [options]     one sub-folder per visitor (folder name = externalId and name)
  fr batch manifest <file> [options]        CSV (externalId,name,image) or JSON Lines
  fr batch table --table T --id-column C --name-column C --image-column C
                 --image-encoding bytea|base64|path [options]
  fr batch status <id> [--url U]            print the report of a batch
  fr batch cancel <id> [--url U]            cancel a batch and print its counts

options:
  --multiple-faces skip|largest|centre
                                  image with several faces: record it (skip, default), or store
                                  the largest or the one nearest the centre
  --mode enrol|reextract          reextract replaces faces of another model from the same images
  --url U                         gateway URL (default http://127.0.0.1:<PORT>)
  --poll-interval-ms N            milliseconds between progress requests (default 1000)

Paths are sent to the gateway as absolute paths; the inference workers read them, so
they must see the same file system. When the gateway requires API keys, set FR_API_KEY
to a key with the enrol scope.

exit status: 0 when every item ended without error, 1 when any item failed or the batch
failed or was cancelled, 2 for invalid usage.`;

/** Seconds between progress lines when stderr is not a terminal (a log file, CI). */
const LOG_LINE_INTERVAL_MS = 5000;
/** Progress samples kept for the rate, which is measured over this many milliseconds. */
const RATE_WINDOW_MS = 15_000;

export interface BatchReport {
  id: string;
  status: string;
  total: number;
  done: number;
  facesStored: number;
  failed: number;
  pending: number;
  [field: string]: unknown;
}

const SOURCE_OPTIONS = ['multiple-faces', 'mode', 'url', 'poll-interval-ms'];
const TABLE_OPTIONS = ['table', 'id-column', 'name-column', 'image-column', 'image-encoding'];

function usageError(message: string): FaceGateError {
  return new FaceGateError('INVALID_REQUEST', `${message}; see 'fr batch --help'`);
}

function gatewayUrl(config: Config, options: Map<string, string>): string {
  const text = options.get('url') ?? `http://127.0.0.1:${config.port}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`--url ${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usageError(`--url must be an http or https URL, got ${JSON.stringify(text)}`);
  }
  return url.origin + url.pathname.replace(/\/$/, '');
}

function choice<T extends string>(
  options: Map<string, string>,
  name: string,
  allowed: readonly T[],
): T | undefined {
  const value = options.get(name);
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw usageError(
      `--${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`,
    );
  }
  return value as T;
}

function required(options: Map<string, string>, name: string): string {
  const value = options.get(name);
  if (!value) throw usageError(`--${name} is required`);
  return value;
}

/** Sends a request to the gateway and raises an error response as a FaceGateError with its code. */
async function request(
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<BatchReport> {
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        ...(body !== undefined && { 'content-type': 'application/json' }),
        // The gateway needs a key with the enrol scope once keys are configured.
        ...(process.env.FR_API_KEY && { 'x-api-key': process.env.FR_API_KEY }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    throw new FaceGateError(
      'DEPENDENCY_UNAVAILABLE',
      `cannot reach the gateway at ${baseUrl} (${(error as Error).message}); start it with 'npm start' or pass --url`,
    );
  }
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new FaceGateError(
      'INTERNAL',
      `the gateway returned HTTP ${response.status} with a body that is not JSON`,
    );
  }
  if (!response.ok) {
    const error = (json as { error?: { code?: string; message?: string } }).error;
    const code: ErrorCode = isErrorCode(error?.code) ? error.code : 'INTERNAL';
    throw new FaceGateError(code, error?.message ?? `the gateway returned HTTP ${response.status}`);
  }
  return json as BatchReport;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
}

/** Draws the progress of a batch on stderr: one redrawn line on a terminal, else a line every few seconds. */
export class ProgressLine {
  readonly #stream: NodeJS.WriteStream;
  readonly #samples: { atMs: number; done: number }[] = [];
  #lastLogMs = 0;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream;
  }

  update(report: BatchReport, nowMs = Date.now()): void {
    this.#samples.push({ atMs: nowMs, done: report.done });
    while (this.#samples.length > 2 && nowMs - this.#samples[0]!.atMs > RATE_WINDOW_MS)
      this.#samples.shift();

    const line = this.format(report);
    if (this.#stream.isTTY) {
      this.#stream.write(`\r${line}\x1b[K`);
    } else if (nowMs - this.#lastLogMs >= LOG_LINE_INTERVAL_MS) {
      this.#stream.write(`${line}\n`);
      this.#lastLogMs = nowMs;
    }
  }

  /** Ends the redrawn line so later output starts on a fresh one. */
  finish(report: BatchReport): void {
    if (this.#stream.isTTY) this.#stream.write(`\r${this.format(report)}\x1b[K\n`);
    else this.#stream.write(`${this.format(report)}\n`);
  }

  /** Items per second over the last samples; 0 until two samples exist. */
  get rate(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.atMs <= first.atMs) return 0;
    return ((last.done - first.done) * 1000) / (last.atMs - first.atMs);
  }

  format(report: BatchReport): string {
    const width = 24;
    const fraction = report.total > 0 ? report.done / report.total : 0;
    const filled = Math.round(fraction * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    const rate = finishedRate(report) ?? this.rate;
    const eta = rate > 0 ? formatDuration(report.pending / rate) : '--:--';
    return (
      `${report.status} ${bar} ${report.done}/${report.total} ${(fraction * 100).toFixed(0)}% ` +
      `${rate.toFixed(1)} items/s ETA ${eta} stored ${report.facesStored} failed ${report.failed}`
    );
  }
}

/**
 * Returns the items per second of a whole finished batch, from its createdAt and
 * finishedAt, or undefined while it runs. A batch that ends between two polls would
 * otherwise show 0.
 */
export function finishedRate(report: BatchReport): number | undefined {
  if (typeof report.finishedAt !== 'string' || typeof report.createdAt !== 'string') {
    return undefined;
  }
  const seconds = (Date.parse(report.finishedAt) - Date.parse(report.createdAt)) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return report.done / Math.max(seconds, 0.001);
}

async function follow(baseUrl: string, id: string, pollIntervalMs: number): Promise<BatchReport> {
  const progress = new ProgressLine();
  const onInterrupt = (): void => {
    process.stderr.write(
      `\nstopped following; batch ${id} goes on. See it with 'fr batch status ${id}', stop it with 'fr batch cancel ${id}'.\n`,
    );
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    for (;;) {
      const report = await request(baseUrl, 'GET', `/api/v1/batches/${id}`);
      if (report.status !== 'planning' && report.status !== 'running') {
        progress.finish(report);
        return report;
      }
      progress.update(report);
      await new Promise((resolveSleep) => setTimeout(resolveSleep, pollIntervalMs));
    }
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

function sourceOf(
  kind: string,
  positional: string[],
  options: Map<string, string>,
): Record<string, unknown> {
  if (kind === 'directory' || kind === 'manifest') {
    if (positional.length !== 1) throw usageError(`fr batch ${kind} takes one path`);
    return { type: kind, path: userPath(positional[0]!) };
  }
  if (positional.length !== 0) throw usageError('fr batch table takes no positional argument');
  return {
    type: 'table',
    table: required(options, 'table'),
    idColumn: required(options, 'id-column'),
    nameColumn: required(options, 'name-column'),
    imageColumn: required(options, 'image-column'),
    imageEncoding:
      choice(options, 'image-encoding', ['bytea', 'base64', 'path'] as const) ??
      required(options, 'image-encoding'),
  };
}

export async function batchCommand(config: Config, args: readonly string[]): Promise<unknown> {
  const [kind, ...rest] = args;
  if (kind === '--help' || kind === 'help') {
    process.stdout.write(`${BATCH_USAGE}\n`);
    process.exit(0);
  }
  if (kind === 'status' || kind === 'cancel') {
    const { positional, options } = parseArgs(rest, ['url']);
    if (positional.length !== 1) throw usageError(`fr batch ${kind} takes one batch id`);
    const baseUrl = gatewayUrl(config, options);
    const id = encodeURIComponent(positional[0]!);
    return request(baseUrl, kind === 'status' ? 'GET' : 'DELETE', `/api/v1/batches/${id}`);
  }
  if (kind !== 'directory' && kind !== 'manifest' && kind !== 'table') {
    throw usageError(kind ? `unknown batch command '${kind}'` : 'missing batch command');
  }

  const known = kind === 'table' ? [...SOURCE_OPTIONS, ...TABLE_OPTIONS] : SOURCE_OPTIONS;
  const { positional, options } = parseArgs(rest, known);
  const baseUrl = gatewayUrl(config, options);
  const pollIntervalMs = Number(options.get('poll-interval-ms') ?? 1000);
  if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 100 || pollIntervalMs > 60_000) {
    throw usageError('--poll-interval-ms must be an integer from 100 to 60000');
  }
  // 'center', the American spelling, is read as 'centre', as the gateway does.
  if (options.get('multiple-faces') === 'center') options.set('multiple-faces', 'centre');
  const body = {
    source: sourceOf(kind, positional, options),
    multipleFaces: choice(options, 'multiple-faces', ['skip', 'largest', 'centre'] as const),
    mode: choice(options, 'mode', ['enrol', 'reextract'] as const),
  };

  const created = await request(baseUrl, 'POST', '/api/v1/batches', body);
  process.stderr.write(`batch ${created.id} created\n`);
  const report = await follow(baseUrl, created.id, pollIntervalMs);
  if (report.failed > 0 || report.status !== 'completed') process.exitCode = 1;
  return report;
}
