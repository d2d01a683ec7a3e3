import busboy from 'busboy';
import type { Request } from 'express';

import { FaceGateError } from '@facegate/errors';
import { SUPPORTED_FORMATS, formatName, sniffFormat } from '@facegate/vision/sniff';

export interface ImageLimits {
  maxImageBytes: number;
}

/**
 * Checks an uploaded image before it goes near a worker: present, within size, a supported
 * format. `input`, the request field of the image, goes into the errors' details.
 */
export function checkImage(
  bytes: Uint8Array,
  label: string,
  limits: ImageLimits,
  input?: string,
): Uint8Array {
  const named = input === undefined ? {} : { input };
  if (bytes.length === 0) {
    throw new FaceGateError('IMAGE_EMPTY', `${label} is empty (0 bytes)`, { details: named });
  }
  if (bytes.length > limits.maxImageBytes) {
    throw new FaceGateError(
      'IMAGE_TOO_LARGE',
      `${label} is ${bytes.length} bytes; the limit is ${limits.maxImageBytes} bytes`,
      { details: named },
    );
  }
  const format = sniffFormat(bytes);
  if (!SUPPORTED_FORMATS.has(format)) {
    throw new FaceGateError(
      'IMAGE_UNSUPPORTED_FORMAT',
      `${label} has an unsupported format: ${formatName(format)}; send JPEG, PNG, WebP, GIF, TIFF or AVIF`,
      { details: { ...named, detectedFormat: format } },
    );
  }
  return bytes;
}

/**
 * Rejects a compressed request body (415). Bodies are read as sent, so a gzip body would
 * reach the parsers as unreadable bytes, and images are compressed already.
 */
function rejectEncodedBody(request: Request): void {
  const encoding = (request.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') {
    throw new FaceGateError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Content-Encoding '${shownType(encoding)}' is not supported; send the body uncompressed`,
    );
  }
}

/** Decodes JSON bytes as UTF-8 strictly, so a malformed byte is an error and not U+FFFD. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Parses a JSON request body as UTF-8 (RFC 8259). Another declared charset is a 415 and
 * invalid UTF-8 a 400, so no replacement character reaches a stored name.
 */
function parseJsonBody(request: Request, bytes: Buffer): unknown {
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(
    request.headers['content-type'] ?? '',
  )?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new FaceGateError(
      'UNSUPPORTED_MEDIA_TYPE',
      `JSON is read as UTF-8 only; charset '${shownType(charset)}' is not supported`,
    );
  }
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new FaceGateError(
      'INVALID_REQUEST',
      'the JSON body is not valid UTF-8; send it encoded as UTF-8',
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new FaceGateError('INVALID_REQUEST', 'the JSON body cannot be parsed');
  }
  // An escaped lone surrogate ("\ud800") is valid JSON but not Unicode text. Node encodes it
  // as U+FFFD in UTF-8, so that is what the database would store.
  if (/\\u[dD][89a-fA-F]/.test(text) && hasLoneSurrogate(parsed)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      'the JSON body has a string with an unpaired surrogate (such as \\ud800), which is not Unicode text',
    );
  }
  return parsed;
}

/** Tells whether a parsed JSON value has a key or string that is not well-formed UTF-16. */
function hasLoneSurrogate(root: unknown): boolean {
  // A loop, not recursion: the value may be nested thousands of levels deep.
  const pending: unknown[] = [root];
  while (pending.length > 0) {
    const value = pending.pop();
    if (typeof value === 'string') {
      if (!isWellFormed(value)) return true;
    } else if (Array.isArray(value)) {
      for (const item of value) pending.push(item);
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        if (!isWellFormed(key)) return true;
        pending.push(item);
      }
    }
  }
  return false;
}

/** String.prototype.isWellFormed (Node 20), which TypeScript's ES2023 library does not declare. */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}

function mediaType(request: Request): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** True when the request declares no body: Content-Length 0, or neither length nor chunks. */
function hasNoBody(request: Request): boolean {
  const length = request.headers['content-length'];
  if (length !== undefined) return length.trim() === '0';
  return request.headers['transfer-encoding'] === undefined;
}

/**
 * Resolves true when the body ends without a byte, and false at its first byte. The rest
 * of a body that is not empty is then read and dropped, as for any request refused unread.
 */
function bodyIsEmpty(request: Request): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const detach = (): void => {
      request.off('data', onData).off('end', onEnd).off('error', onError);
    };
    const settle = (empty: boolean): void => {
      detach();
      if (!empty) request.resume();
      resolve(empty);
    };
    const onData = (chunk: Buffer): void => {
      if (chunk.length > 0) settle(false);
    };
    const onEnd = (): void => settle(true);
    const onError = (error: Error): void => {
      detach();
      reject(error);
    };
    request.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

/** Shortens a media type for an error message, because the header may be kilobytes long. */
function shownType(type: string): string {
  return type.length > 80 ? `${type.slice(0, 77)}...` : type;
}

/** Reads the raw body up to `maxBytes`, rejecting with 413 as soon as it is exceeded. */
function readBody(request: Request, maxBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Promise.reject(
      new FaceGateError(
        'PAYLOAD_TOO_LARGE',
        `the request body is ${declared} bytes; the limit is ${maxBytes} bytes`,
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        request.removeAllListeners('data');
        request.resume();
        reject(
          new FaceGateError(
            'PAYLOAD_TOO_LARGE',
            `the request body exceeds the limit of ${maxBytes} bytes`,
          ),
        );
        return;
      }
      chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

function readMultipart(
  request: Request,
  fields: readonly string[],
  limits: ImageLimits,
): Promise<UploadedImages> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: request.headers,
        // busboy signals 'limit' once a file reaches fileSize bytes, and a file of exactly
        // MAX_IMAGE_BYTES is allowed, so the signal means one byte over.
        limits: { fileSize: limits.maxImageBytes + 1, files: fields.length, fields: 20 },
      });
    } catch (error) {
      reject(
        new FaceGateError(
          'INVALID_REQUEST',
          `invalid multipart request: ${(error as Error).message}`,
        ),
      );
      return;
    }
    const files = new Map<string, Buffer>();
    const formFields: Record<string, unknown> = {};
    let failure: FaceGateError | undefined;
    parser.on('file', (name, stream) => {
      // A body that ends inside a file part makes busboy emit 'error' on the part's stream as
      // well as on the parser. Unheard, it would end the process. The parser's error gives the 400.
      stream.on('error', () => undefined);
      if (!fields.includes(name)) {
        failure ??= new FaceGateError(
          'INVALID_REQUEST',
          `unexpected file field '${name}'; expected ${fields.join(' and ')}`,
        );
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => {
        failure ??= new FaceGateError(
          'PAYLOAD_TOO_LARGE',
          `field '${name}' exceeds the limit of ${limits.maxImageBytes} bytes`,
        );
      });
      stream.on('end', () => files.set(name, Buffer.concat(chunks)));
    });
    parser.on('field', (name, value) => {
      // As in the query string, a parameter given twice is ambiguous.
      if (Object.hasOwn(formFields, name)) {
        failure ??= new FaceGateError(
          'INVALID_REQUEST',
          `form field '${name}' is given more than once; send it once`,
        );
      }
      formFields[name] = value;
    });
    parser.on('filesLimit', () => {
      failure ??= new FaceGateError(
        'INVALID_REQUEST',
        `too many files; expected ${fields.join(' and ')}`,
      );
    });
    parser.on('error', (error: Error) =>
      reject(new FaceGateError('INVALID_REQUEST', `invalid multipart request: ${error.message}`)),
    );
    parser.on('close', () =>
      failure ? reject(failure) : resolve({ images: files, fields: formFields }),
    );
    request.pipe(parser);
  });
}

function decodeBase64(value: unknown, field: string): Buffer {
  if (typeof value !== 'string')
    throw new FaceGateError('INVALID_REQUEST', `JSON field '${field}' must be a base64 string`);
  const text = value.replace(/^data:[^,]*;base64,/, '');
  if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(text)) {
    throw new FaceGateError('INVALID_REQUEST', `JSON field '${field}' is not valid base64`);
  }
  return Buffer.from(text, 'base64');
}

export interface UploadedImages {
  images: Map<string, Buffer>;
  /** Non-file JSON fields (for JSON bodies) or form fields. */
  fields: Record<string, unknown>;
}

/**
 * Extracts the named images from a request: multipart form fields, a raw
 * image/* body (only when one image is expected), or JSON with base64 strings.
 */
export async function readImages(
  request: Request,
  names: readonly string[],
  optional: readonly string[],
  limits: ImageLimits,
): Promise<UploadedImages> {
  rejectEncodedBody(request);
  const type = mediaType(request);
  const all = [...names, ...optional];
  let images = new Map<string, Buffer>();
  let fields: Record<string, unknown> = {};

  if (type === 'multipart/form-data') {
    ({ images, fields } = await readMultipart(request, all, limits));
  } else if (type.startsWith('image/') || type === 'application/octet-stream') {
    if (names.length !== 1) {
      throw new FaceGateError(
        'UNSUPPORTED_MEDIA_TYPE',
        `this route takes its images as named fields (${all.join(', ')}), not as a raw ${shownType(type)} body: ` +
          'send multipart/form-data or JSON',
      );
    }
    images.set(names[0]!, await readBody(request, limits.maxImageBytes));
  } else if (type === 'application/json') {
    const maxJson = Math.ceil((all.length * limits.maxImageBytes * 4) / 3) + 64 * 1024;
    const parsed = parseJsonBody(request, await readBody(request, maxJson));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new FaceGateError('INVALID_REQUEST', 'the JSON body must be an object');
    }
    for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
      if (!all.includes(key)) {
        fields[key] = value;
        continue;
      }
      const bytes = decodeBase64(value, key);
      // The same limit and code as a raw or multipart upload of these bytes.
      if (bytes.length > limits.maxImageBytes) {
        throw new FaceGateError(
          'PAYLOAD_TOO_LARGE',
          `image '${key}' is ${bytes.length} bytes once decoded from base64; the limit is ${limits.maxImageBytes} bytes (MAX_IMAGE_BYTES)`,
        );
      }
      images.set(key, bytes);
    }
  } else if (type === '') {
    // A chunked body shows whether it is empty only once it ends.
    if (hasNoBody(request) || (await bodyIsEmpty(request))) {
      throw new FaceGateError(
        'IMAGE_EMPTY',
        names.length === 1 && optional.length === 0
          ? `the request has no body; send the image as field '${names[0]}' of multipart/form-data or JSON (base64), or as a raw image/* body`
          : `the request has no body; send the images (${all.join(', ')}) as fields of multipart/form-data or JSON (base64)`,
      );
    }
    throw new FaceGateError(
      'UNSUPPORTED_MEDIA_TYPE',
      'missing Content-Type; send multipart/form-data, image/*, application/octet-stream or application/json',
    );
  } else {
    throw new FaceGateError(
      'UNSUPPORTED_MEDIA_TYPE',
      `unsupported Content-Type '${shownType(type)}'; send multipart/form-data, image/*, application/octet-stream or application/json`,
    );
  }

  // Errors name the field when the route takes several images, as the workers' decoding
  // errors of verify do.
  const several = all.length > 1;
  for (const name of names) {
    const bytes = images.get(name);
    if (!bytes) throw new FaceGateError('INVALID_REQUEST', `missing image field '${name}'`);
    checkImage(bytes, `image '${name}'`, limits, several ? name : undefined);
  }
  for (const name of optional) {
    const bytes = images.get(name);
    if (bytes) checkImage(bytes, `image '${name}'`, limits, several ? name : undefined);
  }
  return { images, fields };
}

/** Reads a JSON request body of at most `maxBytes` (415 for another content type, 413 above the limit). */
export async function readJson(request: Request, maxBytes = 1024 * 1024): Promise<unknown> {
  rejectEncodedBody(request);
  const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new FaceGateError(
      'UNSUPPORTED_MEDIA_TYPE',
      `expected Content-Type application/json, got '${shownType(type) || 'none'}'`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes)
      throw new FaceGateError('PAYLOAD_TOO_LARGE', `the JSON body exceeds ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return parseJsonBody(request, Buffer.concat(chunks));
}
