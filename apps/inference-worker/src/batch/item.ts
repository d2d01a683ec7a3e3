/**
 * The job of one batch item. It reads the image and skips it when the visitor already
 * has a face of this model from the same bytes. Otherwise it detects and embeds on the
 * vision pool and stores the face together with the item's outcome.
 */
import { createHash } from 'node:crypto';

import {
  type ClaimedBatchItem,
  type FaceBox,
  type ItemOutcome,
  findOrCreateVisitor,
  findVisitorIdByExternalId,
  findVisitorImageFaces,
  listFacesByImage,
  readTableImage,
  recordItemOutcome,
  storeItemFace,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';

import type { BatchContext } from './context.js';
import { chooseFace } from './faces.js';
import { readImageFile } from './files.js';

/** Outcome of an item in this run, or 'none' when another run had already recorded it. */
export type ItemResult = ItemOutcome['status'] | 'done' | 'none';

/**
 * Extracts one claimed item and records its outcome. Input errors (a corrupt image, a
 * missing file) propagate as non-retryable FaceGateErrors for the caller to record.
 */
export async function extractItem(
  context: BatchContext,
  item: ClaimedBatchItem,
): Promise<ItemResult> {
  if (item.modelId !== null && item.modelId !== context.modelId) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `batch ${item.batchId} was planned with model ${item.modelId}, but this worker runs ${context.modelId}`,
    );
  }
  if (item.externalId === null || item.locator === null) {
    throw new FaceGateError(
      'INTERNAL',
      `batch item ${item.key} has no externalId or image locator`,
    );
  }

  const bytes = await readItemImage(context, item);
  const imageSha256 = createHash('sha256').update(bytes).digest();
  return item.mode === 'reextract'
    ? reextract(context, item, item.externalId, bytes, imageSha256)
    : enrol(context, item, item.externalId, bytes, imageSha256);
}

async function readItemImage(context: BatchContext, item: ClaimedBatchItem): Promise<Buffer> {
  const maxImageBytes = context.config.maxImageBytes;
  if (item.source.type === 'table' && item.source.imageEncoding !== 'path') {
    return readTableImage(context.db, item.source, item.locator!, maxImageBytes);
  }
  return readImageFile(item.locator!, maxImageBytes, context.config.batchSourceRoots);
}

async function record(
  context: BatchContext,
  item: ClaimedBatchItem,
  outcome: ItemOutcome,
): Promise<ItemResult> {
  const recorded = await recordItemOutcome(context.db, item.batchId, item.key, outcome);
  return recorded ? outcome.status : 'none';
}

async function enrol(
  context: BatchContext,
  item: ClaimedBatchItem,
  externalId: string,
  bytes: Buffer,
  imageSha256: Buffer,
): Promise<ItemResult> {
  // A source run again: the same bytes for the same visitor and model need no vision work.
  const existing = await findVisitorImageFaces(context.db, externalId, imageSha256);
  const existingVisitorId = existing?.visitorId ?? null;
  if (existing) {
    const same = existing.faces.find((face) => face.modelId === context.modelId);
    if (same) {
      return record(context, item, {
        status: 'skipped',
        reason: `the visitor already has a face of model ${context.modelId} from this image`,
        faceId: same.id,
      });
    }
  }

  const analysis = await context.pool.analyze(bytes, {});
  const choice = chooseFace(analysis.faces, item.multipleFaces, context.config.enrolMinFaceSize);
  if ('outcome' in choice) return record(context, item, choice.outcome);

  const visitorId =
    existingVisitorId ??
    (await findOrCreateVisitor(context.db, externalId, item.name ?? externalId)).id;
  const stored = await storeItemFace(
    context.db,
    item.batchId,
    item.key,
    {
      visitorId,
      modelId: analysis.modelId,
      embedding: choice.face.embedding,
      detectionScore: choice.face.score,
      box: choice.face.box,
      faceSize: choice.faceSize,
      imageSha256,
      audit: { actor: { keyId: item.createdBy }, details: { batchId: item.batchId } },
    },
    {
      replaceOtherModels: false,
      facesDetected: analysis.faces.length,
      reason: choice.reason ?? undefined,
    },
  );
  return stored.recorded ? stored.status : 'none';
}

/**
 * Re-extraction for a model change: when the visitor has a face of another model from
 * these exact bytes, stores this model's face and deletes the old ones in one transaction.
 * An image without such a face is skipped, so re-extraction never enrols new images.
 */
async function reextract(
  context: BatchContext,
  item: ClaimedBatchItem,
  externalId: string,
  bytes: Buffer,
  imageSha256: Buffer,
): Promise<ItemResult> {
  const visitorId = await findVisitorIdByExternalId(context.db, externalId);
  if (!visitorId) {
    return record(context, item, {
      status: 'skipped',
      reason: `no visitor has externalId ${externalId}; re-extraction only replaces stored faces`,
    });
  }
  const stored = await listFacesByImage(context.db, visitorId, imageSha256);
  const old = stored.filter((face) => face.modelId !== context.modelId);
  if (old.length === 0) {
    const current = stored.find((face) => face.modelId === context.modelId);
    return record(context, item, {
      status: 'skipped',
      reason: current
        ? `the face from this image is already of model ${context.modelId}`
        : 'the visitor has no face from this image to re-extract',
      faceId: current?.id ?? null,
    });
  }

  const analysis = await context.pool.analyze(bytes, {});
  const oldBox: FaceBox | null = old[0]!.box;
  const choice = chooseFace(
    analysis.faces,
    item.multipleFaces,
    context.config.enrolMinFaceSize,
    oldBox,
  );
  if ('outcome' in choice) {
    const reason = `${choice.outcome.reason ?? ''}; the face of model ${old[0]!.modelId} is kept`;
    return record(context, item, { ...choice.outcome, reason });
  }

  const result = await storeItemFace(
    context.db,
    item.batchId,
    item.key,
    {
      visitorId,
      modelId: analysis.modelId,
      embedding: choice.face.embedding,
      detectionScore: choice.face.score,
      box: choice.face.box,
      faceSize: choice.faceSize,
      imageSha256,
      audit: {
        actor: { keyId: item.createdBy },
        details: { batchId: item.batchId, replacedFaceIds: old.map((face) => face.id) },
      },
    },
    {
      replaceOtherModels: true,
      facesDetected: analysis.faces.length,
      reason: `replaced ${old.length} face(s) of model ${old.map((face) => face.modelId).join(', ')}`,
    },
  );
  return result.recorded ? result.status : 'none';
}
