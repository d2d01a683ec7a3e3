// The stream protocol: JSON control messages from the client, JSON results and
// errors back. Frames themselves are binary messages holding one encoded image.
import type { DetectParams, DetectResult, MatchParams, RecognizeResult } from '@facegate/contracts';
import { FaceGateError, type SerializedError } from '@facegate/errors';
import { z } from 'zod';

import { parse } from '../schemas.js';

/** Maximum size of a text message, in bytes. Control messages are a few hundred bytes. */
export const MAX_CONTROL_MESSAGE_BYTES = 4096;

export type StreamMode = 'detect' | 'recognize';
export type FrameId = number | string;
export type FrameTimestamp = number | string;

// Same ranges as the REST query parameters in schemas.ts, but JSON numbers are
// required, so a string "0.5" is rejected rather than coerced.
const minScore = z.number().min(0.05).max(1);
const maxFaces = z.number().int().min(1).max(1000);
const cameraId = z.string().regex(/^[\w.:-]{1,128}$/, 'must be 1-128 letters, digits, or . _ : -');

const detectConfig = z
  .object({
    type: z.literal('config'),
    mode: z.literal('detect'),
    min_score: minScore.optional(),
    limit: maxFaces.optional(),
    camera_id: cameraId.optional(),
  })
  .strict();

const recognizeConfig = detectConfig
  .extend({
    mode: z.literal('recognize'),
    top_k: z.number().int().min(1).max(20).default(1),
    threshold: z.number().min(0.2).max(0.95).optional(),
  })
  .strict();

const configMessage = z.discriminatedUnion('mode', [detectConfig, recognizeConfig], {
  error: (issue) =>
    issue.input === undefined
      ? "is required: 'detect' or 'recognize'"
      : "must be 'detect' or 'recognize'",
});

const frameMessage = z
  .object({
    type: z.literal('frame'),
    frame_id: z
      .union([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), z.string().min(1).max(128)])
      .optional(),
    timestamp: z.union([z.number().finite(), z.string().min(1).max(64)]).optional(),
  })
  .strict();

/** Processing settings for the frames after a config message. */
export type StreamSettings =
  | { mode: 'detect'; cameraId?: string; params: DetectParams }
  | {
      mode: 'recognize';
      cameraId?: string;
      params: DetectParams;
      match: Omit<MatchParams, 'minSeq'>;
    };

/** The client's id and timestamp for the next binary frame. */
export interface FrameHeader {
  frameId?: FrameId;
  timestamp?: FrameTimestamp;
}

export type ClientMessage =
  | { type: 'config'; settings: StreamSettings }
  | { type: 'frame'; header: FrameHeader };

function toSettings(message: z.output<typeof configMessage>): StreamSettings {
  const params: DetectParams = {};
  if (message.min_score !== undefined) params.minScore = message.min_score;
  if (message.limit !== undefined) params.maxFaces = message.limit;
  const cameraId = message.camera_id;

  if (message.mode === 'detect') return { mode: 'detect', params, ...(cameraId && { cameraId }) };
  const match: Omit<MatchParams, 'minSeq'> = { topK: message.top_k };
  if (message.threshold !== undefined) match.threshold = message.threshold;
  return { mode: 'recognize', params, match, ...(cameraId && { cameraId }) };
}

/**
 * Reads an auth message (`{"type": "auth", "api_key": "..."}`) and returns its key, ''
 * when the key is missing or not a string, or null for any other message. The key is
 * never parsed further or logged.
 */
export function readAuthMessage(text: string): string | null {
  if (Buffer.byteLength(text) > MAX_CONTROL_MESSAGE_BYTES || !text.includes('"auth"')) return null;
  let message: { type?: unknown; api_key?: unknown };
  try {
    message = JSON.parse(text) as { type?: unknown; api_key?: unknown };
  } catch {
    return null;
  }
  if (message?.type !== 'auth') return null;
  return typeof message.api_key === 'string' ? message.api_key : '';
}

/**
 * Parses one text message from the client. Throws INVALID_REQUEST naming every
 * problem: malformed JSON, an unknown type, an unknown key or a value out of range.
 */
export function parseClientMessage(text: string): ClientMessage {
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_CONTROL_MESSAGE_BYTES) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `the text message is ${bytes} bytes; control messages are limited to ${MAX_CONTROL_MESSAGE_BYTES} bytes (send frames as binary messages)`,
    );
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new FaceGateError('INVALID_REQUEST', 'the text message is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new FaceGateError('INVALID_REQUEST', 'the text message must be a JSON object');

  const type = (value as { type?: unknown }).type;
  if (type === 'config') {
    return { type: 'config', settings: toSettings(parse(configMessage, value, 'config message')) };
  }
  if (type === 'frame') {
    const message = parse(frameMessage, value, 'frame message');
    const header: FrameHeader = {};
    if (message.frame_id !== undefined) header.frameId = message.frame_id;
    if (message.timestamp !== undefined) header.timestamp = message.timestamp;
    return { type: 'frame', header };
  }
  throw new FaceGateError(
    'INVALID_REQUEST',
    `unknown message type ${JSON.stringify(type ?? null)}; expected "config" or "frame"`,
  );
}

interface ResultEnvelope {
  type: 'result';
  frame_id: FrameId;
  timestamp?: FrameTimestamp;
  camera_id?: string;
  mode: StreamMode;
  /** Frames of this connection that got no result or error since the previous result. */
  dropped: number;
}

/** One processed frame: the REST result of its mode plus the envelope fields. */
export type ResultMessage =
  | (ResultEnvelope & { mode: 'detect' } & DetectResult)
  | (ResultEnvelope & { mode: 'recognize' } & RecognizeResult);

export interface ErrorMessage {
  type: 'error';
  /** Present when the error concerns one frame. */
  frame_id?: FrameId;
  error: Omit<SerializedError, 'status'>;
}

/** Sent once a stream's key is accepted (key_id null while the gateway runs without keys). */
export interface AuthenticatedMessage {
  type: 'authenticated';
  key_id: string | null;
}

export type ServerMessage = ResultMessage | ErrorMessage | AuthenticatedMessage;
