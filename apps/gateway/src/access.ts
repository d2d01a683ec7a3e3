/**
 * Access control of REST requests: who is calling (API key), how often (per-key rate
 * limit in Redis) and what the key may do (scope). Routes name their scope with
 * `requireScope`; only /health, /ready, /metrics and the API docs go without.
 */
import type { IncomingHttpHeaders } from 'node:http';

import type { KeyRing, Principal, RateLimiter, Scope } from '@facegate/auth';
import type { Actor } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `authenticate`; routes without a scope leave it unset. */
      principal?: Principal;
    }
  }
}

/**
 * Returns the key sent in X-API-Key or as `Authorization: Bearer <key>`: undefined when
 * neither header is there, '' for a lone Authorization header of another form or for two
 * headers with different keys.
 */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const header = headers['x-api-key'];
  const apiKey = typeof header === 'string' && header !== '' ? header.trim() : undefined;
  const authorization = headers.authorization;
  if (typeof authorization !== 'string') return apiKey;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  // A malformed header is a wrong key, not a missing one, so the 401 message reads "not valid".
  if (apiKey === undefined) return match ? match[1] : '';
  // Beside X-API-Key, another scheme (Basic from a proxy) is not a key. Two different keys
  // are rejected rather than one picked, since the client is misconfigured.
  if (!match) return apiKey;
  return match[1] === apiKey ? apiKey : '';
}

/** Returns the caller of an authenticated request, as the audit log records it. */
export function actorOf(request: Request): Actor {
  return { keyId: request.principal?.keyId ?? null, requestId: request.requestId };
}

/** Returns the caller of a stream, which has no single request id. */
export function actorOfKey(keyId: string | null): Actor {
  return { keyId };
}

export function unauthenticated(presented: string | undefined): FaceGateError {
  return new FaceGateError(
    'UNAUTHENTICATED',
    presented === undefined
      ? 'an API key is required: send it in the X-API-Key header or as Authorization: Bearer <key>'
      : 'the API key is not valid (unknown or revoked)',
  );
}

export function missingScope(principal: Principal, scope: Scope): FaceGateError {
  const held = [...principal.scopes].join(', ') || 'none';
  return new FaceGateError(
    'FORBIDDEN',
    `API key ${principal.keyId} lacks the '${scope}' scope (it has: ${held})`,
    { details: { keyId: principal.keyId, requiredScope: scope } },
  );
}

export interface AccessDeps {
  keyRing: KeyRing;
  /** Null when RATE_LIMIT_PER_SECOND is 0. */
  rateLimiter: RateLimiter | null;
  /** Counts requests with a missing or invalid key per client address, to slow key guessing. */
  failedAuthLimiter?: RateLimiter | null;
  logger: Logger;
}

/** Requests per second and burst allowed per client address with a missing or invalid key. */
export const FAILED_AUTH_LIMIT = { ratePerSecond: 10, burst: 100 } as const;

/**
 * Counts a request with a missing or invalid key against its client address. Returns the
 * RATE_LIMITED error to respond with once the address is over FAILED_AUTH_LIMIT, else null.
 * Failures of Redis itself let the request through to its 401.
 */
export async function countFailedAuth(
  limiter: RateLimiter | null | undefined,
  address: string | undefined,
): Promise<{ error: FaceGateError; retryAfterSeconds: number } | null> {
  if (!limiter) return null;
  try {
    const decision = await limiter.consume(`address:${address ?? 'unknown'}`);
    if (decision.allowed) return null;
    return {
      error: new FaceGateError(
        'RATE_LIMITED',
        `too many requests with a missing or invalid API key from this address; retry in ${decision.retryAfterMs} ms`,
        { details: { retryAfterMs: decision.retryAfterMs } },
      ),
      retryAfterSeconds: Math.max(1, Math.ceil(decision.retryAfterMs / 1000)),
    };
  } catch {
    return null;
  }
}

/**
 * Builds the middleware of one route family: authenticate, count the request against
 * the key's rate, then check the scope. An unauthenticated request is rejected before
 * it is counted, so a stranger cannot spend a key's budget.
 */
export function accessControl(deps: AccessDeps): (scope: Scope) => RequestHandler {
  let rateLimitFailing = false;

  async function checkRate(request: Request, response: Response, principal: Principal) {
    // The limit is per key: a service running open has no key to count against.
    if (!deps.rateLimiter || principal.keyId === null) return;
    let decision;
    try {
      decision = await deps.rateLimiter.consume(principal.keyId);
      if (rateLimitFailing) deps.logger.info('the rate limit is enforced again');
      rateLimitFailing = false;
    } catch (error) {
      // Without Redis the limit cannot be shared; requests pass, and the queues report Redis down.
      if (!rateLimitFailing) {
        deps.logger.warn({ err: error }, 'rate limit check failed; requests pass unlimited');
      }
      rateLimitFailing = true;
      return;
    }
    if (!decision.allowed) {
      response.setHeader(
        'Retry-After',
        String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000))),
      );
      throw new FaceGateError(
        'RATE_LIMITED',
        `too many requests for API key ${principal.keyId}; retry in ${decision.retryAfterMs} ms`,
        { details: { retryAfterMs: decision.retryAfterMs } },
      );
    }
  }

  return (scope) => (request: Request, response: Response, next: NextFunction) => {
    const presented = presentedKey(request.headers);
    const principal = deps.keyRing.authenticate(presented);
    if (!principal) {
      void countFailedAuth(deps.failedAuthLimiter, request.socket.remoteAddress).then((limited) => {
        if (limited) {
          response.setHeader('Retry-After', String(limited.retryAfterSeconds));
          next(limited.error);
          return;
        }
        response.setHeader('WWW-Authenticate', 'Bearer realm="facegate"');
        next(unauthenticated(presented));
      });
      return;
    }
    request.principal = principal;

    checkRate(request, response, principal)
      .then(() => {
        if (!principal.scopes.has(scope)) throw missingScope(principal, scope);
        next();
      }, next)
      .catch(next);
  };
}
