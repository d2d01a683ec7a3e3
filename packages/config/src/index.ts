import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { findRepoRoot } from './variables.js';
import { type Config, type Variables, variables } from './variables.js';

export { PLAIN_DECIMAL, findRepoRoot, variables } from './variables.js';
export type { Config, VariableSpec } from './variables.js';

/** Raised when one or more variables are invalid; `problems` lists every one of them. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Parses the configuration from `env`, reporting every invalid variable together.
 * Empty strings count as unset, so `VAR=` falls back to the default.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const result: Record<string, unknown> = {};

  for (const [key, spec] of Object.entries(variables) as [
    keyof Variables,
    Variables[keyof Variables],
  ][]) {
    const raw = env[spec.env];
    const value = raw === undefined || raw === '' ? spec.defaultValue : raw;
    const parsed = spec.schema.safeParse(value);
    if (parsed.success) {
      result[key] = parsed.data;
    } else {
      const reason = parsed.error.issues.map((issue) => issue.message).join('; ');
      const shown = spec.secret ? '(value hidden)' : JSON.stringify(raw ?? '');
      problems.push(`${spec.env}=${shown}: ${reason}`);
    }
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return result as Config;
}

/**
 * Jobs one inference worker process takes at once: INFERENCE_CONCURRENCY, else two
 * per thread, so that one runs while the next is already fetched and waiting.
 */
export function inferenceConcurrency(
  config: Pick<Config, 'inferenceConcurrency' | 'inferenceThreads'>,
): number {
  return config.inferenceConcurrency ?? 2 * config.inferenceThreads;
}

/**
 * The folder of test photos used by tests and benchmarks: FACES_DIR, else
 * ../shared/faces beside the repository. Undefined when it has no lfw/ folder.
 */
export function facesDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dir = env.FACES_DIR
    ? resolve(env.FACES_DIR)
    : resolve(findRepoRoot(), '..', 'shared', 'faces');
  return existsSync(join(dir, 'lfw')) ? dir : undefined;
}

/** Why a test or benchmark that needs the photos cannot run. */
export const FACES_MISSING =
  'test photos not found: set FACES_DIR to a folder with lfw/ and lfw-meta/ (default ../shared/faces)';

/**
 * Loads the configuration for a process's start-up: on invalid variables it
 * writes every problem to stderr, prefixed with `service`, and exits with code 2.
 */
export function loadConfigOrExit(service: string, env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${service}: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
