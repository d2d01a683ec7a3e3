// The WebSocket endpoint GET /api/v1/stream on the gateway's HTTP server: it
// accepts upgrades up to the connection limit, pings clients, watches their
// send buffers and closes every stream with 1001 at shutdown.
import { type IncomingMessage, STATUS_CODES, type Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

import type { ErrorCode } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import { WebSocketServer } from 'ws';

import { type Frame, type FrameDispatcher, StreamConnection } from './connection.js';
import { type StreamOptions, readStreamOptions } from './options.js';
import { FrameScheduler } from './scheduler.js';
import { StreamStats } from './stats.js';

export const STREAM_PATH = '/api/v1/stream';

/** Milliseconds between comparisons of each client's send buffer with maxBufferedBytes. */
const BACK_PRESSURE_CHECK_INTERVAL_MS = 250;
/** Milliseconds shutdown waits for clients to return the 1001 close frame before terminating them. */
const SHUTDOWN_CLOSE_TIMEOUT_MS = 2000;

export interface StreamServerDeps {
  dispatcher: FrameDispatcher;
  logger: Logger;
  /** Largest accepted frame, in bytes: the REST API's MAX_IMAGE_BYTES. */
  maxImageBytes: number;
  /** Settings, read from process.env with readStreamOptions when omitted. */
  options?: StreamOptions;
}

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
    if (this.#connections.size >= maxConnections) {
      this.stats.connectionsRejected += 1;
      if (!this.#limitLogged) {
        this.#logger.warn({ maxConnections }, 'stream rejected: connection limit reached');
        this.#limitLogged = true;
      }
      // NOTE: the errors package has no code for a connection limit yet, so this
      // uses QUEUE_FULL, the closest one ("too much work now, retry shortly").
      rejectUpgrade(
        socket,
        503,
        'QUEUE_FULL',
        `the gateway has ${this.#connections.size} open streams (limit ${maxConnections}); retry later`,
        { 'Retry-After': '5' },
      );
      return;
    }

    // Without verifyClient, ws completes the handshake synchronously, so the
    // connection is counted before the next upgrade is looked at.
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      const connection = new StreamConnection(
        ws,
        {
          dispatcher: this.#deps.dispatcher,
          scheduler: this.#scheduler,
          stats: this.stats,
          logger: this.#logger,
          options: this.options,
          maxImageBytes: this.#deps.maxImageBytes,
        },
        request.socket.remoteAddress,
        (closed) => {
          this.#connections.delete(closed);
          this.#limitLogged = false;
        },
      );
      this.#connections.add(connection);
    });
  }

  #heartbeat(): void {
    for (const connection of this.#connections) connection.heartbeat();
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

/** Serves WebSocket streams on `server` at STREAM_PATH. Throws ConfigError for invalid STREAM_* variables. */
export function attachStreamServer(server: Server, deps: StreamServerDeps): StreamServer {
  return new StreamServer(server, deps);
}
