/**
 * Errors with intent. A FaceGateError carries a stable `code` that clients match
 * on and the HTTP status a gateway answers with. `retryable` tells job
 * processors whether running the same input again can succeed.
 */
export type ErrorCode =
  | 'IMAGE_EMPTY'
  | 'IMAGE_UNSUPPORTED_FORMAT'
  | 'IMAGE_CORRUPT'
  | 'IMAGE_TOO_LARGE'
  | 'NO_FACE'
  | 'BATCH_TOO_LARGE'
  | 'MULTIPLE_FACES'
  | 'FACE_TOO_SMALL'
  | 'INVALID_REQUEST'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'RATE_LIMITED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'CONFLICT'
  | 'MODEL_MISMATCH'
  | 'MODEL_UNAVAILABLE'
  | 'CONFIG_INVALID'
  | 'QUEUE_FULL'
  | 'TOO_MANY_STREAMS'
  | 'TIMEOUT'
  | 'REQUEST_TIMEOUT'
  | 'DEPENDENCY_UNAVAILABLE'
  | 'NOT_READY'
  | 'INTERNAL';

const DEFAULT_STATUS: Record<ErrorCode, number> = {
  IMAGE_EMPTY: 400,
  IMAGE_UNSUPPORTED_FORMAT: 415,
  IMAGE_CORRUPT: 400,
  IMAGE_TOO_LARGE: 413,
  NO_FACE: 422,
  BATCH_TOO_LARGE: 413,
  MULTIPLE_FACES: 422,
  FACE_TOO_SMALL: 422,
  INVALID_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  RATE_LIMITED: 429,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PAYLOAD_TOO_LARGE: 413,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  MODEL_MISMATCH: 409,
  MODEL_UNAVAILABLE: 503,
  CONFIG_INVALID: 500,
  QUEUE_FULL: 503,
  TOO_MANY_STREAMS: 503,
  TIMEOUT: 504,
  REQUEST_TIMEOUT: 408,
  DEPENDENCY_UNAVAILABLE: 503,
  NOT_READY: 503,
  INTERNAL: 500,
};

/** Codes whose cause lies in the input itself, so a retry gives the same answer. */
const INPUT_ERRORS: ReadonlySet<ErrorCode> = new Set([
  'IMAGE_EMPTY',
  'IMAGE_UNSUPPORTED_FORMAT',
  'IMAGE_CORRUPT',
  'IMAGE_TOO_LARGE',
  'NO_FACE',
  'BATCH_TOO_LARGE',
  'MULTIPLE_FACES',
  'FACE_TOO_SMALL',
  'INVALID_REQUEST',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'UNSUPPORTED_MEDIA_TYPE',
  'PAYLOAD_TOO_LARGE',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'CONFLICT',
  'MODEL_MISMATCH',
]);

export interface FaceGateErrorOptions {
  status?: number;
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class FaceGateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: FaceGateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FaceGateError';
    this.code = code;
    this.status = options.status ?? DEFAULT_STATUS[code];
    // Every INVALID_REQUEST lists what is wrong in details.problems, whichever check
    // refused the request, so that a client reads one field for all of them.
    this.details =
      code === 'INVALID_REQUEST' && !Array.isArray(options.details?.problems)
        ? { ...options.details, problems: [message] }
        : options.details;
  }

  /** True when running the same input again can succeed (not an input error). */
  get retryable(): boolean {
    return !INPUT_ERRORS.has(this.code);
  }

  toJSON(): SerializedError {
    return serializeError(this);
  }
}

export interface SerializedError {
  code: ErrorCode;
  message: string;
  status: number;
  details?: Record<string, unknown>;
}

export function isFaceGateError(value: unknown): value is FaceGateError {
  return value instanceof FaceGateError;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && value in DEFAULT_STATUS;
}

export function statusForCode(code: ErrorCode): number {
  return DEFAULT_STATUS[code];
}

export function isInputErrorCode(code: ErrorCode): boolean {
  return INPUT_ERRORS.has(code);
}

/**
 * Names which input an image error is about, for requests that carry several
 * images ("image_b: the JPEG data is corrupt ..."). Other errors come back as
 * they are.
 */
export function namingInput(error: unknown, input: string): unknown {
  if (!(error instanceof FaceGateError) || !error.code.startsWith('IMAGE_')) return error;
  return new FaceGateError(error.code, `${input}: ${error.message}`, {
    status: error.status,
    details: { ...error.details, input },
    cause: error,
  });
}

/** Converts any thrown value to the plain form sent across queues and HTTP. */
export function serializeError(error: unknown): SerializedError {
  if (error instanceof FaceGateError) {
    const serialized: SerializedError = {
      code: error.code,
      message: error.message,
      status: error.status,
    };
    if (error.details) serialized.details = error.details;
    return serialized;
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'INTERNAL', message, status: 500 };
}

/** Rebuilds a FaceGateError from its serialized form (the inverse of serializeError). */
export function deserializeError(serialized: SerializedError): FaceGateError {
  const code = isErrorCode(serialized.code) ? serialized.code : 'INTERNAL';
  const options: FaceGateErrorOptions = { status: serialized.status };
  if (serialized.details) options.details = serialized.details;
  return new FaceGateError(code, serialized.message, options);
}
