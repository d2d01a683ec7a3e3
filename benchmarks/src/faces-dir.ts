import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { findRepoRoot } from '@facegate/config';

/**
 * The folder of test photos: FACES_DIR, else ../shared/faces beside the
 * repository. Returns undefined when it does not exist.
 */
export function facesDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env.FACES_DIR
    ? resolve(env.FACES_DIR)
    : resolve(findRepoRoot(), '..', 'shared', 'faces');
  return existsSync(join(dir, 'lfw')) ? dir : undefined;
}

/** A reason string for tests to skip with when the photos are missing. */
export const FACES_MISSING =
  'test photos not found: set FACES_DIR to a folder with lfw/ and lfw-meta/ (default ../shared/faces)';
