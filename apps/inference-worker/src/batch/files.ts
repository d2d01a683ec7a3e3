import { lstatSync, readlinkSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { sep } from 'node:path';

import { FaceGateError } from '@facegate/errors';

/**
 * errno codes that running the job again cannot fix; any other code (EIO, EMFILE, EAGAIN,
 * ESTALE, ...) may pass, as on a network file system that drops for a moment.
 */
const FINAL_ERRNO: Readonly<Record<string, 'NOT_FOUND' | 'INVALID_REQUEST'>> = {
  ENOENT: 'NOT_FOUND',
  ENOTDIR: 'INVALID_REQUEST',
  EISDIR: 'INVALID_REQUEST',
  EACCES: 'INVALID_REQUEST',
  EPERM: 'INVALID_REQUEST',
  ELOOP: 'INVALID_REQUEST',
  ENAMETOOLONG: 'INVALID_REQUEST',
};

/**
 * Turns a file system error into a FaceGateError: NOT_FOUND or INVALID_REQUEST when the
 * path itself is wrong (not retried), DEPENDENCY_UNAVAILABLE otherwise (retried).
 */
export function fileError(error: unknown, path: string, what: string): FaceGateError {
  if (error instanceof FaceGateError) return error;
  const errno = (error as NodeJS.ErrnoException).code ?? 'unknown';
  const reason = error instanceof Error ? error.message : String(error);
  const code = FINAL_ERRNO[errno];
  if (code === 'NOT_FOUND') {
    const target = danglingLinkTarget(path);
    const message =
      target === null
        ? `${what} ${path} does not exist`
        : `${what} ${path} is a symbolic link to ${target}, which does not exist`;
    return new FaceGateError('NOT_FOUND', message, { details: { path, errno } });
  }
  if (code) {
    return new FaceGateError('INVALID_REQUEST', `${what} ${path} cannot be read (${errno})`, {
      details: { path, errno },
    });
  }
  return new FaceGateError('DEPENDENCY_UNAVAILABLE', `reading ${what} ${path} failed: ${reason}`, {
    details: { path, errno },
    cause: error,
  });
}

/** Returns the target of `path` when it is a symbolic link, else null. Synchronous: for error paths. */
function danglingLinkTarget(path: string): string | null {
  try {
    return lstatSync(path).isSymbolicLink() ? readlinkSync(path) : null;
  } catch {
    return null;
  }
}

/** Returns whether `path`, already resolved, is one of `roots` or inside one. */
export function isWithinRoots(path: string, roots: readonly string[]): boolean {
  return roots.some(
    (root) => path === root || path.startsWith(root.endsWith(sep) ? root : root + sep),
  );
}

/**
 * Throws INVALID_REQUEST unless `path`, with symbolic links resolved, lies in one of
 * `roots` (BATCH_SOURCE_ROOTS); with no roots every path passes.
 */
export async function assertWithinRoots(
  path: string,
  roots: readonly string[],
  what: string,
): Promise<void> {
  if (roots.length === 0) return;
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    throw fileError(error, path, what);
  }
  if (!isWithinRoots(real, roots)) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `${what} ${path} is outside the folders batches may read (BATCH_SOURCE_ROOTS)`,
      { details: { path } },
    );
  }
}
