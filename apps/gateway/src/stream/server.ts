// The WebSocket endpoint GET /api/v1/stream on the gateway's HTTP server: it
// accepts upgrades up to the connection limit, pings clients, watches their
// send buffers and closes every stream with 1001 at shutdown.
import { type IncomingMessage, STATUS_CODES, type Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

import type { KeyRing, Principal, RateLimiter } from '@facegate/auth';
import type { RecognizeResult } from '@facegate/contracts';
import { type ErrorCode, FaceGateError, serializeError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';

import {
  actorOfKey,
  countFailedAuth,
  missingScope,
  presentedKey,
  unauthenticated,
} from '../access.js';
import type { MatchLogger } from '../match-log.js';

import { type Frame, type FrameDispatcher, StreamConnection } from './connection.js';
import { type StreamOptions, readStreamOptions } from './options.js';
import { readAuthMessage } from './protocol.js';
import { FrameScheduler } from './scheduler.js';
import { StreamStats } from './stats.js';

export const STREAM_PATH = '/api/v1/stream';

/** Milliseconds between comparisons of each client's send buffer with maxBufferedBytes. */
const BACK_PRESSURE_CHECK_INTERVAL_MS = 250;
/** Milliseconds shutdown waits for clients to return the 1001 close frame before terminating them. */
const SHUTDOWN_CLOSE_TIMEOUT_MS = 2000;
/** Milliseconds a stream opened without a key header has to send its auth message. */
export const AUTH_MESSAGE_TIMEOUT_MS = 5000;

/**
 * Close codes of streams ended by access control, in the application range 4000-4999:
 * the HTTP status plus 4000.
 */
export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_FORBIDDEN = 4403;
export const CLOSE_TOO_MANY = 4429;

export interface StreamServerDeps {
  dispatcher: FrameDispatcher;
  logger: Logger;
  /** Largest accepted frame, in bytes: the REST API's MAX_IMAGE_BYTES. */
  maxImageBytes: number;
  /** Settings, read from process.env with readStreamOptions when omitted. */
  options?: StreamOptions;
  /** Keys accepted; without it every stream is let in (tests of the stream mechanics). */
  keyRing?: KeyRing;
  rateLimiter?: RateLimiter | null;
  failedAuthLimiter?: RateLimiter | null;
  matchLogger?: MatchLogger | null;
  /** Open streams per API key on this gateway. Default 16. */
  maxConnectionsPerKey?: number;
}

/** Outcome of checking a key for a new stream: the principal, or why it is rejected. */
type StreamAccess =
  | { principal: Principal }
  | { error: FaceGateError; closeCode: number; retryAfterSeconds?: number };

/** Rejects an upgrade request with a plain HTTP error response and closes the socket. */
function rejectUpgrade(
  socket: Duplex,
  status: number,
  code: ErrorCode,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({ error: { code, message } });
  const head = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    'Connection: close',
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  socket.on('error', () => socket.destroy());
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
}

export class StreamServer {
  readonly stats = new StreamStats();
  readonly options: StreamOptions;
  readonly #wss: WebSocketServer;
  readonly #scheduler: FrameScheduler<Frame>;
  readonly #connections = new Set<StreamConnection>();
  readonly #deps: StreamServerDeps;
  readonly #logger: Logger;
  readonly #timers: NodeJS.Timeout[];
  #closing: Promise<void> | undefined;
  /** Set after logging a rejection at the limit, so a client retrying in a loop logs once. */
  #limitLogged = false;
  readonly #connectionsPerKey = new Map<string, number>();
  /** Streams opened without a key header that have not sent their auth message yet. */
  readonly #awaitingAuth = new Set<WebSocket>();

  constructor(server: Server, deps: StreamServerDeps) {
    this.#deps = deps;
    this.#logger = deps.logger.child({ component: 'stream' });
    this.options =
      deps.options ?? readStreamOptions(process.env, { maxImageBytes: deps.maxImageBytes });
    this.#scheduler = new FrameScheduler({
      maxInFlightPerLane: this.options.maxInFlightPerStream,
      maxInFlightTotal: this.options.maxInFlightTotal,
    });
    // permessage-deflate stays off (the ws default for servers), because JPEG and
    // PNG frames do not compress and it would cost CPU on the gateway.
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: this.options.maxPayloadBytes });

    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(request, socket, head),
    );
    this.#timers = [
      setInterval(() => this.#heartbeat(), this.options.heartbeatIntervalMs),
      setInterval(() => this.#checkBackPressure(), BACK_PRESSURE_CHECK_INTERVAL_MS),
    ];
    for (const timer of this.#timers) timer.unref();
    this.#logger.info({ path: STREAM_PATH, ...this.options }, 'stream endpoint ready');
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Closes every stream with 1001 and rejects new ones. Calling it again returns the same promise. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  #onUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    // The path is compared as sent, because parsing it as a URL would read '//host/...' as a host name.
    const path = (request.url ?? '').split('?')[0];
    if (path !== STREAM_PATH) {
      rejectUpgrade(
        socket,
        404,
        'NOT_FOUND',
        `no WebSocket endpoint at ${path}; use ${STREAM_PATH}`,
      );
      return;
    }
    if (this.#closing) {
      this.stats.connectionsRejected += 1;
      rejectUpgrade(socket, 503, 'NOT_READY', 'the gateway is shutting down', {
        'Retry-After': '1',
      });
      return;
    }
    const { maxConnections } = this.options;
    // Streams still authenticating count too, so the limit cannot be passed by opening
    // many sockets before any of them authenticates.
    if (this.#connections.size + this.#awaitingAuth.size >= maxConnections) {
      this.stats.connectionsRejected += 1;
      if (!this.#limitLogged) {
        this.#logger.warn({ maxConnections }, 'stream rejected: connection limit reached');
        this.#limitLogged = true;
      }
      rejectUpgrade(
        socket,
        503,
        'TOO_MANY_STREAMS',
        `the gateway has ${this.#connections.size} open streams (limit ${maxConnections}); retry later`,
        { 'Retry-After': '5' },
      );
      return;
    }

    const keyRing = this.#deps.keyRing;
    const presented = presentedKey(request.headers);
    if (keyRing && keyRing.mode === 'keys' && presented === undefined) {
      // Browsers cannot set headers on a WebSocket, so the key may come as the first message.
      this.#wss.handleUpgrade(request, socket, head, (ws) =>
        this.#awaitAuthMessage(ws, request.socket.remoteAddress),
      );
      return;
    }
    void this.#checkAccess(presented, request.socket.remoteAddress).then((access) => {
      if ('error' in access) {
        const { status, code, message } = serializeError(access.error);
        rejectUpgrade(socket, status, code, message, {
          ...(status === 401 && { 'WWW-Authenticate': 'Bearer realm="facegate"' }),
          ...(access.retryAfterSeconds !== undefined && {
            'Retry-After': String(access.retryAfterSeconds),
          }),
        });
        return;
      }
      // A client that hung up during the check never reaches #open, so its slot is freed here.
      let opened = false;
      socket.once('close', () => {
        if (!opened) this.#release(access.principal.keyId);
      });
      this.#wss.handleUpgrade(request, socket, head, (ws) => {
        opened = true;
        this.#open(ws, access.principal, request.socket.remoteAddress);
      });
    });
  }

  /**
   * Checks a key for a new stream: known, with the recognize scope, under its connection
   * limit and its request rate (a connection attempt counts as one request). On success
   * the key's stream slot is taken; #open keeps it and the stream's close frees it.
   */
  async #checkAccess(
    presented: string | undefined,
    remoteAddress: string | undefined,
  ): Promise<StreamAccess> {
    const keyRing = this.#deps.keyRing;
    if (!keyRing) return { principal: { keyId: null, scopes: new Set(['recognize']) } };

    const principal = keyRing.authenticate(presented);
    if (!principal) {
      const limited = await countFailedAuth(this.#deps.failedAuthLimiter, remoteAddress);
      if (limited) {
        return {
          error: limited.error,
          closeCode: CLOSE_TOO_MANY,
          retryAfterSeconds: limited.retryAfterSeconds,
        };
      }
      return { error: unauthenticated(presented), closeCode: CLOSE_UNAUTHENTICATED };
    }
    if (!principal.scopes.has('recognize'))
      return { error: missingScope(principal, 'recognize'), closeCode: CLOSE_FORBIDDEN };

    // The slot is taken before the rate check awaits, so concurrent upgrades cannot all pass.
    const limit = this.#deps.maxConnectionsPerKey ?? 16;
    const open = principal.keyId === null ? 0 : (this.#connectionsPerKey.get(principal.keyId) ?? 0);
    if (open >= limit) {
      const error = tooMany(
        `API key ${principal.keyId} has ${open} open streams on this gateway (limit ${limit})`,
      );
      return { error, closeCode: CLOSE_TOO_MANY, retryAfterSeconds: 5 };
    }
    if (principal.keyId !== null) this.#connectionsPerKey.set(principal.keyId, open + 1);

    if (this.#deps.rateLimiter && principal.keyId !== null) {
      try {
        const decision = await this.#deps.rateLimiter.consume(principal.keyId);
        if (!decision.allowed) {
          this.#release(principal.keyId);
          const retryAfterSeconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
          const error = tooMany(
            `too many requests for API key ${principal.keyId}; retry in ${decision.retryAfterMs} ms`,
          );
          return { error, closeCode: CLOSE_TOO_MANY, retryAfterSeconds };
        }
      } catch {
        // Redis is down: the REST middleware logs this once; the stream's frames fail on their own.
      }
    }
    return { principal };
  }

  /** Frees the per-key stream slot that #checkAccess took. */
  #release(keyId: string | null): void {
    if (keyId === null) return;
    const left = (this.#connectionsPerKey.get(keyId) ?? 1) - 1;
    if (left > 0) this.#connectionsPerKey.set(keyId, left);
    else this.#connectionsPerKey.delete(keyId);
  }

  /** Waits for `{"type":"auth","api_key":"..."}` as the first message of a stream. */
  #awaitAuthMessage(ws: WebSocket, remoteAddress: string | undefined): void {
    this.#awaitingAuth.add(ws);
    const reject = (closeCode: number, error: FaceGateError): void => {
      this.#awaitingAuth.delete(ws);
      const { code, message } = serializeError(error);
      if (ws.readyState === ws.OPEN) {
        ws.send(JSON.stringify({ type: 'error', error: { code, message } }));
        ws.close(closeCode, code);
      }
    };
    const timer = setTimeout(
      () =>
        reject(
          CLOSE_UNAUTHENTICATED,
          unauthenticatedStream(`no auth message within ${AUTH_MESSAGE_TIMEOUT_MS} ms`),
        ),
      AUTH_MESSAGE_TIMEOUT_MS,
    );
    timer.unref();
    ws.once('close', () => {
      clearTimeout(timer);
      this.#awaitingAuth.delete(ws);
    });
    ws.once('message', (data: RawData, isBinary: boolean) => {
      clearTimeout(timer);
      const presented = isBinary ? null : readAuthMessage(toText(data));
      if (!presented) {
        reject(
          CLOSE_UNAUTHENTICATED,
          unauthenticatedStream(
            'the first message must be {"type":"auth","api_key":"<key>"} when no X-API-Key header is sent',
          ),
        );
        return;
      }

      // Messages sent right after the auth message wait here for the stream to open.
      const early: [RawData, boolean][] = [];
      const hold = (next: RawData, nextIsBinary: boolean): void => {
        early.push([next, nextIsBinary]);
      };
      ws.on('message', hold);
      void this.#checkAccess(presented, remoteAddress).then((access) => {
        ws.off('message', hold);
        if ('error' in access) {
          reject(access.closeCode, access.error);
          return;
        }
        this.#awaitingAuth.delete(ws);
        if (ws.readyState !== ws.OPEN) {
          this.#release(access.principal.keyId);
          return;
        }
        ws.send(JSON.stringify({ type: 'authenticated', key_id: access.principal.keyId }));
        const connection = this.#open(ws, access.principal, remoteAddress);
        for (const [next, nextIsBinary] of early) connection.receive(next, nextIsBinary);
      });
    });
  }

  /** Starts serving a stream whose per-key slot #checkAccess took. */
  #open(ws: WebSocket, principal: Principal, remoteAddress: string | undefined): StreamConnection {
    const { keyId } = principal;
    const matchLogger = this.#deps.matchLogger;
    const connection = new StreamConnection(
      ws,
      {
        principal,
        ...(matchLogger && {
          onRecognized: (_principal: Principal | undefined, result: RecognizeResult) =>
            matchLogger.record(actorOfKey(keyId), result),
        }),
        dispatcher: this.#deps.dispatcher,
        scheduler: this.#scheduler,
        stats: this.stats,
        logger: this.#logger,
        options: this.options,
        maxImageBytes: this.#deps.maxImageBytes,
      },
      remoteAddress,
      (closed) => {
        this.#connections.delete(closed);
        this.#limitLogged = false;
        this.#release(keyId);
      },
    );
    this.#connections.add(connection);
    return connection;
  }

  /** Closes the streams opened while the service ran without keys, with code 4401. */
  closeStreamsWithoutKey(): void {
    for (const connection of this.#connections) {
      if (connection.keyId === null)
        connection.close(CLOSE_UNAUTHENTICATED, 'an API key is now required');
    }
  }

  /** Closes the streams of keys that are no longer accepted, with code 4401. */
  closeStreamsOf(keyIds: ReadonlySet<string>): void {
    for (const connection of this.#connections) {
      if (connection.keyId !== null && keyIds.has(connection.keyId))
        connection.close(CLOSE_UNAUTHENTICATED, 'API key revoked');
    }
  }

  #heartbeat(): void {
    const keyRing = this.#deps.keyRing;
    for (const connection of this.#connections) {
      // Covers a revocation whose event this server missed.
      if (keyRing && !keyRing.accepts(connection.keyId)) {
        const reason = connection.keyId === null ? 'an API key is now required' : 'API key revoked';
        connection.close(CLOSE_UNAUTHENTICATED, reason);
        continue;
      }
      connection.heartbeat();
    }
  }

  #checkBackPressure(): void {
    const nowMs = performance.now();
    for (const connection of this.#connections) connection.checkBackPressure(nowMs);
  }

  async #shutdown(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    const open = [...this.#connections];
    for (const connection of open) connection.close(1001, 'the gateway is shutting down');

    const timeout = new AbortController();
    await Promise.race([
      Promise.all(open.map((connection) => connection.closed)),
      delay(SHUTDOWN_CLOSE_TIMEOUT_MS, undefined, { signal: timeout.signal }).catch(
        () => undefined,
      ),
    ]);
    timeout.abort();
    for (const connection of this.#connections) connection.terminate();

    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    this.#logger.info(
      { closedStreams: open.length, stats: this.stats.snapshot() },
      'stream endpoint closed',
    );
  }
}

function toText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8');
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8');
  return Buffer.from(data).toString('utf8');
}

function tooMany(message: string): FaceGateError {
  return new FaceGateError('RATE_LIMITED', message);
}

function unauthenticatedStream(message: string): FaceGateError {
  return new FaceGateError('UNAUTHENTICATED', message);
}

/** Serves WebSocket streams on `server` at STREAM_PATH. Throws ConfigError for invalid STREAM_* variables. */
export function attachStreamServer(server: Server, deps: StreamServerDeps): StreamServer {
  return new StreamServer(server, deps);
}
