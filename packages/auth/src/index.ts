/**
 * Access control of the gateway: API keys with scopes, from API_KEYS and the keys
 * table, and the per-key request rate limit shared through Redis.
 */
export {
  MIN_ENV_KEY_LENGTH,
  SCOPES,
  generateApiKey,
  hashApiKey,
  keyIdOf,
  parseApiKeysVariable,
  parseScopes,
} from './keys.js';
export type { EnvApiKey, GeneratedApiKey, Scope } from './keys.js';
export { KeyRing } from './key-ring.js';
export type { AuthMode, KeyRingOptions, Principal } from './key-ring.js';
export { RateLimiter } from './rate-limiter.js';
export type { RateLimitDecision, RateLimitOptions } from './rate-limiter.js';
