// One WebSocket stream: reads control messages and frames, hands frames to the
// scheduler, sends results and errors back, and watches the client's reading pace.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import type { Principal } from '@facegate/auth';
import type { DetectResult, RecognizeResult } from '@facegate/contracts';
import {
  type ErrorCode,
  FaceGateError,
  type SerializedError,
  serializeError,
} from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import { type RawData, WebSocket } from 'ws';

import type { Dispatcher } from '../dispatcher.js';
import { checkImage } from '../images.js';
import type { StreamOptions } from './options.js';
import {
  type ErrorMessage,
  type FrameHeader,
  type FrameId,
  type FrameTimestamp,
  type ResultMessage,
  type ServerMessage,
  type StreamSettings,
  parseClientMessage,
  readAuthMessage,
} from './protocol.js';
import type { FrameScheduler, Lane } from './scheduler.js';
import type { StreamStats } from './stats.js';

/** The part of the Dispatcher a stream uses, so tests can pass a fake. */
export type FrameDispatcher = Pick<Dispatcher, 'request'>;

export interface Frame {
  /** Server-side number: 1 for the connection's first binary message. */
  seq: number;
  /** The client's frame_id, else `seq`. */
  id: FrameId;
  timestamp?: FrameTimestamp;
  /** Settings in effect when the frame arrived. */
  settings: StreamSettings;
  bytes: Buffer;
  receivedAtMs: number;
}

export interface ConnectionContext {
  /** The API key the stream authenticated with. */
  principal?: Principal;
  /** Called with each recognition result, for the match log. */
  onRecognized?: (principal: Principal | undefined, result: RecognizeResult) => void;
  dispatcher: FrameDispatcher;
  scheduler: FrameScheduler<Frame>;
  stats: StreamStats;
  logger: Logger;
  options: StreamOptions;
  maxImageBytes: number;
}

const roundMs = (value: number): number => Math.round(value * 1000) / 1000;

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class StreamConnection {
  readonly id = randomUUID();
  readonly counts = { received: 0, processed: 0, dropped: 0, failed: 0 };
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  readonly #ws: WebSocket;
  readonly #context: ConnectionContext;
  readonly #lane: Lane<Frame>;
  readonly #logger: Logger;
  readonly #openedAtMs = performance.now();
  readonly #errorCounts = new Map<ErrorCode, number>();
  #settings: StreamSettings | undefined;
  #header: FrameHeader | undefined;
  #frameSeq = 0;
  /** Frames that got no message since the last result; sent as `dropped` with the next one. */
  #droppedSinceResult = 0;
  #overCapSinceMs: number | undefined;
  #alive = true;
  #closing = false;
  #socketError: string | undefined;

  constructor(
    ws: WebSocket,
    context: ConnectionContext,
    remoteAddress: string | undefined,
    onClosed: (connection: StreamConnection) => void,
  ) {
    this.#ws = ws;
    this.#context = context;
    this.#logger = context.logger.child({ connectionId: this.id });
    this.#lane = context.scheduler.addLane((frame) => this.#process(frame));
    let resolveClosed: () => void;
    this.closed = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    context.stats.connections += 1;
    context.stats.connectionsOpened += 1;
    this.#logger.info({ remoteAddress }, 'stream connected');

    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('pong', () => {
      this.#alive = true;
    });
    // ws closes the connection itself after an error (1009 for an oversize
    // message, 1002 for a protocol violation), so the error is only kept for the close line.
    ws.on('error', (error) => {
      this.#socketError = error.message;
    });
    ws.on('close', (code, reason) => {
      this.#beginClose();
      context.stats.connections -= 1;
      this.#logger.info(
        {
          cameraId: this.#settings?.cameraId,
          code,
          reason: reason.toString(),
          error: this.#socketError,
          durationMs: Math.round(performance.now() - this.#openedAtMs),
          frames: this.counts,
          errors: Object.fromEntries(this.#errorCounts),
        },
        'stream closed',
      );
      onClosed(this);
      resolveClosed();
    });
  }

  get cameraId(): string | undefined {
    return this.#settings?.cameraId;
  }

  /** Id of the API key the stream authenticated with; null when the service runs open. */
  get keyId(): string | null {
    return this.#context.principal?.keyId ?? null;
  }

  /** Sends a close frame. The connection stops taking frames at once, before the client replies. */
  close(code: number, reason: string): void {
    this.#beginClose();
    if (this.#ws.readyState === WebSocket.OPEN || this.#ws.readyState === WebSocket.CONNECTING)
      this.#ws.close(code, reason);
  }

  terminate(): void {
    this.#beginClose();
    this.#ws.terminate();
  }

  /** Pings the client, or terminates it when no pong came back for the previous ping. */
  heartbeat(): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    if (!this.#alive) {
      this.#logger.info(
        { cameraId: this.cameraId, heartbeatIntervalMs: this.#context.options.heartbeatIntervalMs },
        'stream client missed a heartbeat; terminating',
      );
      this.#context.stats.unresponsiveClientsTerminated += 1;
      this.terminate();
      return;
    }
    this.#alive = false;
    this.#ws.ping();
  }

  /**
   * Holds the lane while the client is behind on reading, and closes the
   * connection with 1013 once it has been behind for longer than the grace period.
   */
  checkBackPressure(nowMs: number): void {
    if (this.#closing) return;
    const { maxBufferedBytes, slowClientGraceMs } = this.#context.options;
    const bufferedBytes = this.#ws.bufferedAmount;
    if (bufferedBytes <= maxBufferedBytes) {
      this.#overCapSinceMs = undefined;
      this.#context.scheduler.setHeld(this.#lane, false);
      return;
    }

    this.#overCapSinceMs ??= nowMs;
    this.#context.scheduler.setHeld(this.#lane, true);
    if (nowMs - this.#overCapSinceMs < slowClientGraceMs) return;
    this.#logger.warn(
      { cameraId: this.cameraId, bufferedBytes, maxBufferedBytes, slowClientGraceMs },
      'stream client reads too slowly; closing',
    );
    this.#context.stats.slowClientsClosed += 1;
    // A close reason is limited to 123 bytes.
    this.close(
      1013,
      `client too slow: over ${maxBufferedBytes} bytes unsent for ${slowClientGraceMs} ms`,
    );
  }

  #beginClose(): void {
    if (this.#closing) return;
    this.#closing = true;
    const waiting = this.#context.scheduler.closeLane(this.#lane);
    if (waiting) this.#countDropped();
  }

  /** Handles a message the server read before this connection existed (during authentication). */
  receive(data: RawData, isBinary: boolean): void {
    this.#onMessage(data, isBinary);
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#closing) return;
    const bytes = toBuffer(data);
    if (isBinary) this.#onFrame(bytes);
    else this.#onControl(bytes.toString('utf8'));
  }

  #onControl(text: string): void {
    if (readAuthMessage(text) !== null) {
      // A client that always authenticates by message also works with a gateway that
      // runs without keys; after authentication a second auth message changes nothing.
      if (this.keyId === null) this.#send({ type: 'authenticated', key_id: null });
      else
        this.#sendError(
          new FaceGateError('INVALID_REQUEST', 'the stream is already authenticated'),
        );
      return;
    }
    let message;
    try {
      message = parseClientMessage(text);
    } catch (error) {
      this.#sendError(error);
      return;
    }
    if (message.type === 'frame') {
      this.#header = message.header;
      return;
    }

    const { maxCandidates } = this.#context.options;
    if (message.settings.mode === 'recognize' && message.settings.match.topK > maxCandidates) {
      this.#sendError(
        new FaceGateError(
          'INVALID_REQUEST',
          `config message 'top_k' is ${message.settings.match.topK}; the limit is ${maxCandidates} (MAX_CANDIDATES)`,
        ),
      );
      return;
    }

    const first = this.#settings === undefined;
    this.#settings = message.settings;
    const level = first ? 'info' : 'debug';
    this.#logger[level](
      { cameraId: message.settings.cameraId, mode: message.settings.mode },
      'stream configured',
    );
  }

  #onFrame(bytes: Buffer): void {
    this.#frameSeq += 1;
    this.counts.received += 1;
    this.#context.stats.framesReceived += 1;
    const header = this.#header;
    this.#header = undefined;
    const frameId = header?.frameId ?? this.#frameSeq;

    const settings = this.#settings;
    try {
      if (!settings) {
        throw new FaceGateError(
          'INVALID_REQUEST',
          `frame ${JSON.stringify(frameId)} arrived before any config message; send {"type": "config", "mode": "detect" or "recognize"} first`,
        );
      }
      checkImage(bytes, `frame ${JSON.stringify(frameId)}`, {
        maxImageBytes: this.#context.maxImageBytes,
      });
    } catch (error) {
      this.#sendFrameError(frameId, error);
      return;
    }

    const frame: Frame = {
      seq: this.#frameSeq,
      id: frameId,
      settings,
      bytes,
      receivedAtMs: performance.now(),
    };
    if (header?.timestamp !== undefined) frame.timestamp = header.timestamp;
    const replaced = this.#context.scheduler.submit(this.#lane, frame);
    if (replaced) this.#countDropped();
  }

  async #process(frame: Frame): Promise<void> {
    const dispatchedAtMs = performance.now();
    let result: DetectResult | RecognizeResult;
    try {
      result = (await this.#request(frame)) as DetectResult | RecognizeResult;
    } catch (error) {
      if (this.#closing) this.#countDropped();
      else this.#sendFrameError(frame.id, error);
      return;
    }
    if (this.#closing) {
      this.#countDropped();
      return;
    }
    if (frame.settings.mode === 'recognize')
      this.#context.onRecognized?.(this.#context.principal, result as RecognizeResult);
    this.#sendResult(frame, result, dispatchedAtMs);
  }

  #request(frame: Frame): Promise<unknown> {
    const { dispatcher } = this.#context;
    const requestId = `${this.id}:${frame.seq}`;
    const { settings } = frame;
    if (settings.mode === 'detect')
      return dispatcher.request('detect', requestId, [frame.bytes], { params: settings.params });

    // NOTE: with minSeq 0 a stream does not wait, as REST recognize does, for the
    // matcher to apply this gateway's latest enrolments. A visitor enrolled a
    // moment ago can go unnamed in the frames until the matcher catches up.
    return dispatcher.request('recognize', requestId, [frame.bytes], {
      params: settings.params,
      match: { ...settings.match, minSeq: 0 },
    });
  }

  #sendResult(frame: Frame, result: DetectResult | RecognizeResult, dispatchedAtMs: number): void {
    const { settings } = frame;
    const gatewayMs = roundMs(performance.now() - frame.receivedAtMs);
    const message = {
      type: 'result',
      frame_id: frame.id,
      ...(frame.timestamp !== undefined && { timestamp: frame.timestamp }),
      ...(settings.cameraId !== undefined && { camera_id: settings.cameraId }),
      mode: settings.mode,
      ...result,
      dropped: this.#droppedSinceResult,
      timings: {
        ...result.timings,
        streamWaitMs: roundMs(dispatchedAtMs - frame.receivedAtMs),
        gatewayMs,
      },
    } as ResultMessage;

    if (!this.#send(message)) {
      this.#countDropped();
      return;
    }
    this.#droppedSinceResult = 0;
    this.counts.processed += 1;
    this.#context.stats.framesProcessed += 1;
    this.#context.stats.observeLatency(gatewayMs, settings.mode);
  }

  /** Sends an error about one frame. A frame whose error cannot be sent counts as dropped. */
  #sendFrameError(frameId: FrameId, error: unknown): void {
    if (!this.#sendError(error, frameId)) {
      this.#countDropped();
      return;
    }
    this.counts.failed += 1;
    this.#context.stats.framesFailed += 1;
  }

  #sendError(error: unknown, frameId?: FrameId): boolean {
    const serialized = serializeError(error);
    this.#noteError(serialized, error, frameId);
    const message: ErrorMessage = {
      type: 'error',
      ...(frameId !== undefined && { frame_id: frameId }),
      error: {
        code: serialized.code,
        message: serialized.message,
        ...(serialized.details && { details: serialized.details }),
      },
    };
    return this.#send(message);
  }

  /** Logs the first error of each code on this connection, and counts every one for the close line. */
  #noteError(serialized: SerializedError, error: unknown, frameId?: FrameId): void {
    const { code, status, message } = serialized;
    const seen = this.#errorCounts.get(code) ?? 0;
    this.#errorCounts.set(code, seen + 1);
    if (seen > 0) return;
    const fields = { cameraId: this.cameraId, frameId, code };
    if (code === 'INTERNAL') this.#logger.error({ ...fields, err: error }, 'stream frame failed');
    else if (status >= 500) this.#logger.warn({ ...fields, message }, 'stream frame failed');
    else this.#logger.debug(fields, 'stream message rejected');
  }

  #countDropped(): void {
    this.#droppedSinceResult += 1;
    this.counts.dropped += 1;
    this.#context.stats.framesDropped += 1;
  }

  /** Sends `message` unless the client is over its buffer cap, and returns whether it went out. */
  #send(message: ServerMessage): boolean {
    if (this.#closing || this.#ws.readyState !== WebSocket.OPEN) return false;
    if (this.#ws.bufferedAmount > this.#context.options.maxBufferedBytes) {
      this.#overCapSinceMs ??= performance.now();
      this.#context.scheduler.setHeld(this.#lane, true);
      return false;
    }
    this.#ws.send(JSON.stringify(message));
    return true;
  }
}
