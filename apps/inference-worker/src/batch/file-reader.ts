import { fileURLToPath } from 'node:url';

import type { FaceGateError } from '@facegate/errors';
import { deserializeError } from '@facegate/errors';
import { Piscina } from 'piscina';

import type { ReadFileResult, ReadFilesRequest } from './file-reader-thread.js';
import { fileError } from './files.js';

/**
 * Reads the image files of batch jobs on a thread of its own (file-reader-thread.ts),
 * several files per hand-over. A file system that hangs blocks that thread, not the
 * process's event loop, so recognition jobs and heartbeats go on.
 */
export class FileReader {
  readonly #piscina = new Piscina({
    filename: fileURLToPath(new URL('./file-reader-thread.js', import.meta.url)),
    minThreads: 1,
    maxThreads: 1,
    idleTimeout: Number.POSITIVE_INFINITY,
  });

  /**
   * Reads whole image files. The result at index i is the bytes of paths[i] or its error:
   * INVALID_REQUEST outside `roots` (BATCH_SOURCE_ROOTS) or for what is not a regular file,
   * IMAGE_TOO_LARGE (checked before reading), IMAGE_EMPTY, or the errors of `fileError`.
   */
  async read(
    paths: readonly string[],
    maxImageBytes: number,
    roots: readonly string[],
  ): Promise<(Buffer | FaceGateError)[]> {
    const request: ReadFilesRequest = { paths: [...paths], maxImageBytes, roots: [...roots] };
    const results = (await this.#piscina.run(request)) as ReadFileResult[];
    return results.map((result, index) => {
      if ('bytes' in result) {
        return Buffer.from(result.bytes.buffer, result.bytes.byteOffset, result.bytes.byteLength);
      }
      if ('error' in result) return deserializeError(result.error);
      const error = Object.assign(new Error(result.message), { code: result.errno });
      return fileError(error, paths[index]!, 'image file');
    });
  }

  async close(): Promise<void> {
    await this.#piscina.destroy();
  }
}
