/**
 * API key text, hashing and the API_KEYS variable. A key created by the service reads
 * `fgk_<id>_<secret>`: the id is public (logs and the audit trail name keys by it) and
 * the secret is 32 random bytes. Only SHA-256 digests of keys are kept.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';

import type { ApiKeyScope } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';

export type Scope = ApiKeyScope;

/**
 * The scopes, each allowing one route family. `recognize` allows detect, recognize, verify
 * and streams, `enrol` visitors, faces and batches, and `admin` the index status, keys
 * and the audit log. No scope implies another, so an admin key that also enrols lists both.
 */
export const SCOPES: readonly Scope[] = ['recognize', 'enrol', 'admin'];

/** Shortest key accepted in API_KEYS: 16 characters leave guessing out of reach only if random. */
export const MIN_ENV_KEY_LENGTH = 16;

const KEY_ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
const KEY_ID_LENGTH = 12;
const SECRET_BYTES = 32;
const GENERATED_KEY_PATTERN = /^fgk_([a-z0-9]{12})_[A-Za-z0-9_-]{43}$/;
const ENV_KEY_PATTERN = /^[A-Za-z0-9._~-]+$/;

export interface GeneratedApiKey {
  id: string;
  /** The key to hand to the client; it is shown once and never stored. */
  key: string;
  sha256: Buffer;
}

/** An API key from the environment; its id is `env-<position in API_KEYS>`. */
export interface EnvApiKey {
  id: string;
  sha256: Buffer;
  scopes: Scope[];
}

export function hashApiKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

export function generateApiKey(): GeneratedApiKey {
  let id = '';
  for (let i = 0; i < KEY_ID_LENGTH; i += 1)
    id += KEY_ID_ALPHABET[randomInt(KEY_ID_ALPHABET.length)];
  const key = `fgk_${id}_${randomBytes(SECRET_BYTES).toString('base64url')}`;
  return { id, key, sha256: hashApiKey(key) };
}

/** Returns the id inside a key the service generated, or null for any other text. */
export function keyIdOf(key: string): string | null {
  return GENERATED_KEY_PATTERN.exec(key)?.[1] ?? null;
}

/**
 * Parses a scope list such as `recognize+enrol`. Throws FaceGateError INVALID_REQUEST
 * naming the unknown scope.
 */
export function parseScopes(text: string): Scope[] {
  const scopes = text.split('+').map((scope) => scope.trim());
  for (const scope of scopes) {
    if (!(SCOPES as readonly string[]).includes(scope)) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `unknown scope ${JSON.stringify(scope)}; the scopes are ${SCOPES.join(', ')}`,
      );
    }
  }
  return [...new Set(scopes as Scope[])];
}

/**
 * Parses API_KEYS: `<key>:<scope>[+<scope>],...`. Entries are named by position in errors,
 * because the key text must not reach a log. Throws FaceGateError CONFIG_INVALID listing
 * every problem.
 */
export function parseApiKeysVariable(text: string | undefined): EnvApiKey[] {
  if (text === undefined || text.trim() === '') return [];

  const problems: string[] = [];
  const keys: EnvApiKey[] = [];
  const seen = new Set<string>();
  text.split(',').forEach((entry, index) => {
    const position = index + 1;
    const separator = entry.lastIndexOf(':');
    const key = entry.slice(0, Math.max(0, separator)).trim();
    const scopeText = separator < 0 ? '' : entry.slice(separator + 1).trim();

    if (separator < 0 || key === '' || scopeText === '') {
      problems.push(`entry ${position} is not <key>:<scope>[+<scope>]`);
      return;
    }
    if (key.length < MIN_ENV_KEY_LENGTH || !ENV_KEY_PATTERN.test(key)) {
      problems.push(
        `the key of entry ${position} must have at least ${MIN_ENV_KEY_LENGTH} characters, ` +
          'all letters, digits or . _ ~ -',
      );
      return;
    }
    let scopes: Scope[];
    try {
      scopes = parseScopes(scopeText);
    } catch (error) {
      problems.push(`entry ${position}: ${(error as Error).message}`);
      return;
    }
    const sha256 = hashApiKey(key);
    const digest = sha256.toString('hex');
    if (seen.has(digest)) {
      problems.push(`the key of entry ${position} repeats an earlier entry`);
      return;
    }
    seen.add(digest);
    keys.push({ id: `env-${position}`, sha256, scopes });
  });

  if (problems.length > 0) {
    throw new FaceGateError('CONFIG_INVALID', `API_KEYS is invalid: ${problems.join('; ')}`, {
      details: { problems },
    });
  }
  return keys;
}
