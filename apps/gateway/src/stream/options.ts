// Settings of the WebSocket stream endpoint, read from the environment. They
// live here until the config package takes them over; the table has the same
// shape as the config package's variables so it can move there unchanged.
import { ConfigError, type VariableSpec } from '@facegate/config';
import { z } from 'zod';

export interface StreamOptions {
  /** Frames one connection may have in the workers at once (STREAM_MAX_IN_FLIGHT). */
  maxInFlightPerStream: number;
  /** Frames all connections of this gateway may have in the workers at once. */
  maxInFlightTotal: number;
  /** Bytes queued for sending to one client above which its results are dropped. */
  maxBufferedBytes: number;
  /** Milliseconds a client may stay above maxBufferedBytes before it is closed with 1013. */
  slowClientGraceMs: number;
  /** Milliseconds between pings; a client that has not answered the previous ping is terminated. */
  heartbeatIntervalMs: number;
  /** Largest WebSocket message, in bytes; a larger one closes the connection with 1009. */
  maxPayloadBytes: number;
  /** Open streams per gateway above which an upgrade is rejected with 503. */
  maxConnections: number;
}

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

function variable<T>(
  env: string,
  description: string,
  defaultValue: string | undefined,
  schema: z.ZodType<T>,
  defaultLabel?: string,
): VariableSpec<T> {
  const spec: VariableSpec<T> = { env, description, defaultValue, schema };
  if (defaultLabel !== undefined) spec.defaultLabel = defaultLabel;
  return spec;
}

/** Every environment variable of the stream endpoint, with its unit and default. */
export const streamVariables = {
  maxInFlightPerStream: variable(
    'STREAM_MAX_IN_FLIGHT',
    'Frames one WebSocket stream may have in the inference workers at once; newer frames replace the one waiting.',
    '1',
    integer(1, 64),
  ),
  maxInFlightTotal: variable(
    'STREAM_MAX_IN_FLIGHT_TOTAL',
    'Frames all WebSocket streams of one gateway may have in the inference workers at once, shared round robin.',
    '8',
    integer(1, 4096),
  ),
  maxBufferedBytes: variable(
    'STREAM_MAX_BUFFERED_BYTES',
    'Bytes waiting to be sent to one stream client above which its results are dropped.',
    String(1024 * 1024),
    integer(1024, 1024 * 1024 * 1024),
  ),
  slowClientGraceMs: variable(
    'STREAM_SLOW_CLIENT_GRACE_MS',
    'Milliseconds a stream client may stay above STREAM_MAX_BUFFERED_BYTES before it is closed with code 1013.',
    '5000',
    integer(100, 600_000),
  ),
  heartbeatIntervalMs: variable(
    'STREAM_HEARTBEAT_INTERVAL_MS',
    'Milliseconds between WebSocket pings; a client that misses one pong is disconnected.',
    '15000',
    integer(100, 600_000),
  ),
  maxPayloadBytes: variable(
    'STREAM_MAX_PAYLOAD_BYTES',
    'Largest WebSocket message, in bytes; a larger one closes the stream with code 1009.',
    undefined,
    integer(1024, 1024 * 1024 * 1024).optional(),
    'MAX_IMAGE_BYTES',
  ),
  maxConnections: variable(
    'STREAM_MAX_CONNECTIONS',
    'Open WebSocket streams per gateway above which new ones are rejected with 503.',
    '64',
    integer(1, 100_000),
  ),
} as const;

/**
 * Parses the stream settings from `env`, reporting every invalid variable
 * together. An unset STREAM_MAX_PAYLOAD_BYTES takes `maxImageBytes`, so a frame
 * the REST API would accept also fits in one message.
 */
export function readStreamOptions(
  env: NodeJS.ProcessEnv,
  defaults: { maxImageBytes: number },
): StreamOptions {
  const problems: string[] = [];
  const result: Record<string, unknown> = {};

  for (const [key, spec] of Object.entries(streamVariables)) {
    const raw = env[spec.env];
    const value = raw === undefined || raw === '' ? spec.defaultValue : raw;
    const parsed = (spec.schema as z.ZodType).safeParse(value);
    if (parsed.success) {
      result[key] = parsed.data;
    } else {
      const reason = parsed.error.issues.map((issue) => issue.message).join('; ');
      problems.push(`${spec.env}=${JSON.stringify(raw ?? '')}: ${reason}`);
    }
  }

  if (problems.length > 0) throw new ConfigError(problems);
  result.maxPayloadBytes ??= defaults.maxImageBytes;
  return result as unknown as StreamOptions;
}
