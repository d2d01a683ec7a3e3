// Settings of the WebSocket stream endpoint. The variables are defined, documented
// and validated with all the others in the config package.
import { type Config, loadConfig } from '@facegate/config';

export interface StreamOptions {
  /** Frames one connection may have in the workers at once (STREAM_MAX_IN_FLIGHT). */
  maxInFlightPerStream: number;
  /** Frames all connections of this gateway may have in the workers at once. */
  maxInFlightTotal: number;
  /** Bytes queued for sending to one client above which its results are dropped. */
  maxBufferedBytes: number;
  /** Milliseconds a client may stay above maxBufferedBytes before it is closed with 1013. */
  slowClientGraceMs: number;
  /** Milliseconds between pings. A client that sent no pong for the previous ping is terminated. */
  heartbeatIntervalMs: number;
  /** Largest WebSocket message, in bytes. A larger one closes the connection with 1009. */
  maxPayloadBytes: number;
  /** Open streams per gateway above which an upgrade is rejected with 503. */
  maxConnections: number;
  /** Largest top_k of a recognize stream (MAX_CANDIDATES). */
  maxCandidates: number;
}

/** Maps the stream settings of the loaded configuration; MAX_IMAGE_BYTES bounds a message when STREAM_MAX_PAYLOAD_BYTES is unset. */
export function streamOptionsFromConfig(config: Config): StreamOptions {
  return {
    maxInFlightPerStream: config.streamMaxInFlight,
    maxInFlightTotal: config.streamMaxInFlightTotal,
    maxBufferedBytes: config.streamMaxBufferedBytes,
    slowClientGraceMs: config.streamSlowClientGraceMs,
    heartbeatIntervalMs: config.streamHeartbeatIntervalMs,
    maxPayloadBytes: config.streamMaxPayloadBytes ?? config.maxImageBytes,
    maxConnections: config.streamMaxConnections,
    maxCandidates: config.maxCandidates,
  };
}

/**
 * Parses the stream settings from `env` through the config package, which
 * reports every invalid variable together (ConfigError).
 */
export function readStreamOptions(
  env: NodeJS.ProcessEnv,
  defaults: { maxImageBytes: number },
): StreamOptions {
  return streamOptionsFromConfig({
    ...loadConfig(env),
    ...(env.MAX_IMAGE_BYTES ? {} : { maxImageBytes: defaults.maxImageBytes }),
  });
}
