/**
 * REST routes of key management and the audit log, for keys with the admin scope.
 * A created key is returned once; the service keeps only its SHA-256.
 */
import { SCOPES, type Scope, generateApiKey } from '@facegate/auth';
import {
  type ApiKeyRecord,
  MAX_AUDIT_PAGE_SIZE,
  insertApiKey,
  listApiKeys,
  listAudit,
  revokeApiKey,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import type express from 'express';
import type { RequestHandler } from 'express';
import { z } from 'zod';

import { actorOf } from './access.js';
import type { GatewayDeps } from './app.js';
import { readJson } from './images.js';
import { noQuery, numberParameter, parse } from './schemas.js';

export const newKeyBody = z
  .object({
    name: z.string().trim().min(1).max(200),
    scopes: z
      .array(z.enum(SCOPES as [Scope, ...Scope[]]))
      .min(1)
      .max(SCOPES.length),
  })
  .strict();

export const keyIdParams = z.object({ id: z.string().regex(/^[a-z0-9]{12}$/) });

export const auditQuery = z
  .object({
    limit: numberParameter(z.number().int().min(1).max(MAX_AUDIT_PAGE_SIZE)).default(100),
    before: numberParameter(z.number().int().min(1)).optional(),
    target_type: z.enum(['visitor', 'face', 'batch', 'key']).optional(),
    target_id: z.string().min(1).max(200).optional(),
  })
  .strict();

function keyJson(key: ApiKeyRecord): Record<string, unknown> {
  return {
    id: key.id,
    name: key.name,
    scopes: key.scopes,
    source: 'database',
    createdBy: key.createdBy,
    createdAt: key.createdAt.toISOString(),
    revokedAt: key.revokedAt?.toISOString() ?? null,
  };
}

export function registerKeyRoutes(
  app: express.Express,
  deps: GatewayDeps,
  guard: (scope: Scope) => RequestHandler,
): void {
  const { db, keyRing } = deps;

  app.get('/api/v1/keys', guard('admin'), noQuery, async (_request, response) => {
    const stored = await listApiKeys(db);
    const fromEnvironment = keyRing.keyIds
      .filter((id) => id.startsWith('env-'))
      .map((id) => ({ id, source: 'environment', revokedAt: null }));
    response.json({ items: [...fromEnvironment, ...stored.map(keyJson)] });
  });

  app.post('/api/v1/keys', guard('admin'), noQuery, async (request, response) => {
    const body = parse(newKeyBody, await readJson(request, 16 * 1024), 'body');
    const generated = generateApiKey();
    const actor = actorOf(request);
    const record = await insertApiKey(
      db,
      {
        id: generated.id,
        name: body.name,
        keySha256: generated.sha256,
        scopes: [...new Set(body.scopes)],
        createdBy: actor.keyId ?? 'open',
      },
      actor,
    );
    // The ring reloads on the table's notification too; this makes the key usable at once here.
    await keyRing.reload();
    // The only copy of the key must not stay in a proxy or browser cache.
    response.setHeader('Cache-Control', 'no-store');
    response.status(201).json({ ...keyJson(record), key: generated.key });
  });

  app.delete('/api/v1/keys/:id', guard('admin'), noQuery, async (request, response) => {
    if (
      /^env-\d+$/.test(String(request.params.id)) &&
      keyRing.keyIds.includes(String(request.params.id))
    ) {
      throw new FaceGateError(
        'CONFLICT',
        'keys from API_KEYS cannot be revoked through the API: remove the key from API_KEYS and restart the gateways',
      );
    }
    const id = String(request.params.id);
    // Like a malformed uuid elsewhere, a malformed key id names no key.
    if (!keyIdParams.safeParse({ id }).success)
      throw new FaceGateError('NOT_FOUND', `API key ${id} does not exist`);
    const record = await revokeApiKey(db, id, actorOf(request), {
      keepAnAdmin: { adminKeysElsewhere: keyRing.envAdminKeys },
    });
    if (!record) throw new FaceGateError('NOT_FOUND', `API key ${id} does not exist`);
    await keyRing.reload();
    response.json(keyJson(record));
  });

  app.get('/api/v1/audit', guard('admin'), async (request, response) => {
    const query = parse(auditQuery, request.query, 'query');
    const page = await listAudit(db, {
      limit: query.limit,
      ...(query.before !== undefined && { before: query.before }),
      ...(query.target_type !== undefined && { targetType: query.target_type }),
      ...(query.target_id !== undefined && { targetId: query.target_id }),
    });
    response.json({
      items: page.items.map((entry) => ({ ...entry, at: entry.at.toISOString() })),
      nextBefore: page.nextBefore,
    });
  });
}
