import { type Config, type Variables, variables } from './variables.js';

export { findRepoRoot, variables } from './variables.js';
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
      problems.push(`${spec.env}=${JSON.stringify(raw ?? '')}: ${reason}`);
    }
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return result as Config;
}
