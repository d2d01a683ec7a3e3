/**
 * REST routes of bulk extraction. The gateway only validates and stores a batch and
 * queues its planning job. The inference workers enumerate the source, read the images
 * and store the faces, so the paths in a source must be visible to every worker.
 */
import { isAbsolute, resolve, sep } from 'node:path';

import { addBatchPlanJob, redisUnavailable } from '@facegate/contracts';
import {
  type Batch,
  type BatchCounts,
  type BatchItem,
  MAX_BATCH_ITEM_PAGE_SIZE,
  MAX_BATCH_PAGE_SIZE,
  cancelBatch,
  checkTableSource,
  countBatchItems,
  createBatch,
  failBatch,
  getBatch,
  listBatchItems,
  listBatches,
  recordAudit,
  transaction,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import type { Scope } from '@facegate/auth';
import type express from 'express';
import type { RequestHandler } from 'express';
import { z } from 'zod';

import { actorOf } from './access.js';
import type { GatewayDeps } from './app.js';
import { readJson } from './images.js';
import { facesPolicy, noQuery, numberParameter, parse } from './schemas.js';

/** Failed items listed in a batch report; the items route pages through all of them. */
const REPORT_FAILURES = 100;
const MAX_BODY_BYTES = 64 * 1024;

const absolutePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((path) => isAbsolute(path), 'must be an absolute path (the workers read it)')
  .refine((path) => !path.includes('\0'), 'must not contain NUL characters');

// Identifiers are checked again, strictly, by the database layer before any SQL is built.
const identifier = z.string().min(1).max(200);

const batchSource = z.discriminatedUnion(
  'type',
  [
    z.object({ type: z.literal('directory'), path: absolutePath }).strict(),
    z.object({ type: z.literal('manifest'), path: absolutePath }).strict(),
    z
      .object({
        type: z.literal('table'),
        table: identifier,
        idColumn: identifier,
        nameColumn: identifier,
        imageColumn: identifier,
        imageEncoding: z.enum(['bytea', 'base64', 'path']),
      })
      .strict(),
  ],
  { error: "must be one of 'directory', 'manifest', 'table'" },
);

export const newBatchBody = z
  .object({
    source: batchSource,
    multipleFaces: facesPolicy(['skip', 'largest', 'centre']).default('skip'),
    mode: z.enum(['enrol', 'reextract']).default('enrol'),
  })
  .strict();

export const batchIdParams = z.object({ id: z.string().uuid() });

const ITEM_STATUSES = [
  'pending',
  'queued',
  'done',
  'no_face',
  'multiple_faces',
  'too_small',
  'failed',
  'skipped',
  'ignored',
] as const;

export const batchListQuery = z
  .object({
    status: z.enum(['planning', 'running', 'completed', 'cancelled', 'failed']).optional(),
    limit: numberParameter(z.number().int().min(1).max(MAX_BATCH_PAGE_SIZE)).default(20),
    cursor: z.string().min(1).max(200).optional(),
  })
  .strict();

export const batchItemsQuery = z
  .object({
    status: z.enum(ITEM_STATUSES).optional(),
    limit: numberParameter(z.number().int().min(1).max(MAX_BATCH_ITEM_PAGE_SIZE)).default(100),
    cursor: z.string().min(1).max(2000).optional(),
  })
  .strict();

function itemJson(item: BatchItem): Record<string, unknown> {
  return {
    item: item.key,
    externalId: item.externalId,
    image: item.locator,
    status: item.status,
    code: item.code,
    reason: item.reason,
    faceId: item.faceId,
    facesDetected: item.facesDetected,
    attempts: item.attempts,
    updatedAt: item.updatedAt.toISOString(),
  };
}

/** Converts a batch and its item counts to the JSON of the batch routes. */
function batchJson(batch: Batch, counts: BatchCounts): Record<string, unknown> {
  return {
    id: batch.id,
    status: batch.status,
    source: batch.source,
    mode: batch.mode,
    multipleFacesPolicy: batch.multipleFaces,
    modelId: batch.modelId,
    ...counts,
    ignored: batch.ignoredEntries,
    error: batch.error,
    createdAt: batch.createdAt.toISOString(),
    plannedAt: batch.plannedAt?.toISOString() ?? null,
    finishedAt: batch.finishedAt?.toISOString() ?? null,
  };
}

/** Builds the batch report: status, counts and the first failed items. */
export async function batchReport(
  deps: Pick<GatewayDeps, 'db'>,
  batch: Batch,
): Promise<Record<string, unknown>> {
  const [counts, failures]: [BatchCounts, { items: BatchItem[] }] = await Promise.all([
    countBatchItems(deps.db, batch.id),
    listBatchItems(deps.db, batch.id, { status: 'failed', limit: REPORT_FAILURES }),
  ]);
  return {
    ...batchJson(batch, counts),
    failures: failures.items.map((item) => ({
      item: item.key,
      code: item.code,
      message: item.reason,
    })),
  };
}

/**
 * Rejects a source path outside BATCH_SOURCE_ROOTS. The path is compared as written; the
 * workers compare it again with symbolic links resolved.
 */
function assertWithinRoots(path: string, roots: readonly string[]): void {
  if (roots.length === 0) return;
  const resolved = resolve(path);
  if (!roots.some((root) => resolved === root || resolved.startsWith(`${root}${sep}`))) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `source path ${path} is outside the folders batches may read (BATCH_SOURCE_ROOTS: ${roots.join(', ')})`,
      { details: { path, roots } },
    );
  }
}

export function registerBatchRoutes(
  app: express.Express,
  deps: GatewayDeps,
  guard: (scope: Scope) => RequestHandler,
): void {
  const { db, logger } = deps;

  app.post('/api/v1/batches', guard('enrol'), noQuery, async (request, response) => {
    const body = parse(newBatchBody, await readJson(request, MAX_BODY_BYTES), 'body');
    // Checked here so a wrong table or column is a 400 now, not a failed batch later.
    if (body.source.type === 'table') await checkTableSource(db, body.source);
    else assertWithinRoots(body.source.path, deps.config.batchSourceRoots);

    const batch = await createBatch(
      db,
      { source: body.source, mode: body.mode, multipleFaces: body.multipleFaces },
      { actor: actorOf(request) },
    );
    try {
      await addBatchPlanJob(deps.queues, {
        kind: 'plan',
        batchId: batch.id,
        requestId: request.requestId,
      });
    } catch (error) {
      // Without its planning job the batch would wait until a worker restarts and resumes it.
      const failure = redisUnavailable(error);
      await failBatch(db, batch.id, { code: failure.code, message: failure.message }).catch(
        (dbError: unknown) =>
          logger.error(
            { err: dbError, batchId: batch.id },
            'recording the batch as failed did not succeed; it stays in planning until a worker restarts and resumes it',
          ),
      );
      throw failure;
    }
    logger.info(
      {
        requestId: request.requestId,
        batchId: batch.id,
        source: body.source.type,
        mode: body.mode,
      },
      'batch created',
    );
    response.status(202).json({ id: batch.id, status: batch.status });
  });

  app.get('/api/v1/batches', guard('enrol'), async (request, response) => {
    const query = parse(batchListQuery, request.query, 'query');
    const page = await listBatches(db, query);
    response.json({
      items: page.items.map((batch) => batchJson(batch, batch.counts)),
      nextCursor: page.nextCursor ?? null,
    });
  });

  app.get('/api/v1/batches/:id', guard('enrol'), noQuery, async (request, response) => {
    const { id } = parse(batchIdParams, request.params, 'path');
    const batch = await getBatch(db, id);
    if (!batch) throw new FaceGateError('NOT_FOUND', `batch ${id} does not exist`);
    response.json(await batchReport(deps, batch));
  });

  app.get('/api/v1/batches/:id/items', guard('enrol'), async (request, response) => {
    const { id } = parse(batchIdParams, request.params, 'path');
    const query = parse(batchItemsQuery, request.query, 'query');
    if (!(await getBatch(db, id)))
      throw new FaceGateError('NOT_FOUND', `batch ${id} does not exist`);
    const page = await listBatchItems(db, id, query);
    response.json({ items: page.items.map(itemJson), nextCursor: page.nextCursor ?? null });
  });

  app.delete('/api/v1/batches/:id', guard('enrol'), noQuery, async (request, response) => {
    const { id } = parse(batchIdParams, request.params, 'path');
    const result = await transaction(db, async (tx) => {
      const outcome = await cancelBatch(tx, id);
      if (outcome?.cancelled) {
        await recordAudit(tx, actorOf(request), {
          action: 'batch.cancel',
          targetType: 'batch',
          targetId: id,
        });
      }
      return outcome;
    });
    if (!result) throw new FaceGateError('NOT_FOUND', `batch ${id} does not exist`);
    if (!result.cancelled && result.batch.status !== 'cancelled') {
      throw new FaceGateError(
        'CONFLICT',
        `batch ${id} is already ${result.batch.status}; only a planning or running batch can be cancelled`,
        {
          details: { status: result.batch.status },
        },
      );
    }
    const report = await batchReport(deps, result.batch);
    if (result.cancelled) {
      const { total, done, pending } = report as Record<string, number>;
      logger.info(
        { requestId: request.requestId, batchId: id, total, done, pending },
        'batch cancelled',
      );
    }
    response.json(report);
  });
}
