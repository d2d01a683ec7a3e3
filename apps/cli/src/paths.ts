import { resolve } from 'node:path';

/**
 * Resolves a path given on the command line. `npm run` starts the CLI in the
 * repository's root but records the directory it was called from in INIT_CWD, so a
 * relative path means what the user meant.
 */
export function userPath(path: string, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.INIT_CWD ?? process.cwd(), path);
}
