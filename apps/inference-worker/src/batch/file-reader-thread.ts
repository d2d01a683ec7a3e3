// Worker thread that reads the image files of batch jobs with synchronous calls, a group
// of files per task. Reading through libuv's pool costs four or five hand-overs between
// threads per file (open, stat, read, close), and each one wakes a thread on cores busy
// with vision work. Errors come back as values, because an Error sent across the thread
// boundary loses its code.
import { closeSync, constants, fstatSync, openSync, readSync, realpathSync } from 'node:fs';

import { FaceGateError, type SerializedError, serializeError } from '@facegate/errors';

import { isWithinRoots } from './files.js';

/** Files to read, the byte limit of one file and BATCH_SOURCE_ROOTS (empty: any path). */
export interface ReadFilesRequest {
  paths: string[];
  maxImageBytes: number;
  roots: string[];
}

/** Result of one file: its bytes, a FaceGateError, or the system error of a file call. */
export type ReadFileResult =
  | { bytes: Uint8Array }
  | { error: SerializedError }
  | { errno: string; message: string };

export default function readFiles(request: ReadFilesRequest): ReadFileResult[] {
  return request.paths.map((path) => {
    try {
      return { bytes: readFile(path, request.maxImageBytes, request.roots) };
    } catch (error) {
      if (error instanceof FaceGateError) return { error: serializeError(error) };
      const errno = (error as NodeJS.ErrnoException).code ?? 'unknown';
      return { errno, message: error instanceof Error ? error.message : String(error) };
    }
  });
}

function readFile(path: string, maxImageBytes: number, roots: readonly string[]): Uint8Array {
  if (roots.length > 0 && !isWithinRoots(realpathSync(path), roots)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `image file ${path} is outside the folders batches may read (BATCH_SOURCE_ROOTS)`,
      { details: { path } },
    );
  }
  // Without O_NONBLOCK, opening a FIFO waits for a writer and would hold the thread, and
  // every batch job of this worker behind it, until one comes. Reads of files ignore it.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) {
      throw new FaceGateError('INVALID_REQUEST', `image ${path} is not a regular file`);
    }
    if (info.size === 0) throw new FaceGateError('IMAGE_EMPTY', `image file ${path} is empty`);
    if (info.size > maxImageBytes) {
      throw new FaceGateError(
        'IMAGE_TOO_LARGE',
        `image file ${path} has ${info.size} bytes; the limit is ${maxImageBytes} bytes (MAX_IMAGE_BYTES)`,
        { details: { sizeBytes: info.size, maxBytes: maxImageBytes } },
      );
    }
    // A file that shrinks while it is read gives fewer bytes, one that grows its first `size`.
    const bytes = new Uint8Array(info.size);
    let length = 0;
    while (length < bytes.length) {
      const read = readSync(fd, bytes, length, bytes.length - length, length);
      if (read === 0) break;
      length += read;
    }
    if (length === 0) throw new FaceGateError('IMAGE_EMPTY', `image file ${path} is empty`);
    return length === bytes.length ? bytes : bytes.slice(0, length);
  } finally {
    closeSync(fd);
  }
}
