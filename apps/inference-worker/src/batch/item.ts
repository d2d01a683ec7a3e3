/**
 * The work of batch items. A job's enrolment items go through extractItems together.
 * Their images are read and hashed, then looked up in one query, because an image the
 * visitor already has with this model needs no vision work. The rest are detected and
 * embedded on the vision pool, and their faces and outcomes are stored with a few
 * statements for the whole group. Re-extraction items are handled one by one.
 */
import { createHash } from 'node:crypto';

import {
  type ClaimedBatchItem,
  type FaceBox,
  type ItemFaceEntry,
  type ItemOutcome,
  findOrCreateVisitors,
  findVisitorIdByExternalId,
  findVisitorsImageFaces,
  listFacesByImage,
  readTableImage,
  recordItemOutcome,
  recordItemOutcomes,
  storeItemFace,
  storeItemFaces,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';

import type { ImageAnalysis } from '../thread-messages.js';
import type { BatchContext } from './context.js';
import { chooseFace } from './faces.js';

/**
 * Image bytes a job keeps between reading its images and analysing them. Images beyond
 * the budget are dropped after hashing and read again when their turn comes, so a job
 * keeps at most this much besides the READS_AT_ONCE images it is reading.
 */
export const KEPT_BYTES_PER_JOB = 32 * 1024 * 1024;

/** Images a job reads at once. */
const READS_AT_ONCE = 8;

/**
 * Images a job hands to the vision pool in one task. Two halve the hand-overs between
 * threads, and keep a live request queued behind a batch task for at most two images.
 */
const IMAGES_PER_TASK = 2;

/** Outcome of an item in this run, or 'none' when another run had already recorded it. */
export type ItemResult = ItemOutcome['status'] | 'done' | 'none';

/**
 * Re-extracts one claimed item and records its outcome. Input errors (a corrupt image, a
 * missing file) propagate as non-retryable FaceGateErrors for the caller to record.
 */
async function reextractItem(context: BatchContext, item: ClaimedBatchItem): Promise<ItemResult> {
  const externalId = checkItem(context, item);
  const bytes = await readItemImage(context, item);
  const imageSha256 = createHash('sha256').update(bytes).digest();
  return reextract(context, item, externalId, bytes, imageSha256);
}

/** An item whose work threw; the error is not recorded yet. */
export interface ItemFailure {
  item: ClaimedBatchItem;
  error: unknown;
}

/** An enrolment item between its stages in extractItems. */
interface Pending {
  item: ClaimedBatchItem;
  externalId: string;
  /** Null when the bytes did not fit in KEPT_BYTES_PER_JOB or were handed to the pool. */
  bytes: Buffer | null;
  imageSha256: Buffer;
  visitorId: string | null;
}

/**
 * Extracts claimed items together and records the outcome of every item that does not
 * throw. Returns the items that threw, with their errors, for the caller to record or
 * retry; the other items are finished. `keptBytes` is the byte budget of
 * KEPT_BYTES_PER_JOB.
 */
export async function extractItems(
  context: BatchContext,
  items: readonly ClaimedBatchItem[],
  keptBytes = KEPT_BYTES_PER_JOB,
): Promise<ItemFailure[]> {
  const failures: ItemFailure[] = [];
  const attempt = async <T>(item: ClaimedBatchItem, work: () => Promise<T>) => {
    try {
      return await work();
    } catch (error) {
      failures.push({ item, error });
      return undefined;
    }
  };

  const reextracted = Promise.all(
    items
      .filter((item) => item.mode === 'reextract')
      .map((item) => attempt(item, () => reextractItem(context, item))),
  );
  const enrolling = items.filter((item) => item.mode !== 'reextract');
  const pending: Pending[] = [];
  let readBytes = 0;
  for (let start = 0; start < enrolling.length; start += READS_AT_ONCE) {
    const group: { item: ClaimedBatchItem; externalId: string }[] = [];
    for (const item of enrolling.slice(start, start + READS_AT_ONCE)) {
      try {
        group.push({ item, externalId: checkItem(context, item) });
      } catch (error) {
        failures.push({ item, error });
      }
    }
    const images = await readItemImages(
      context,
      group.map(({ item }) => item),
    );
    group.forEach(({ item, externalId }, index) => {
      const bytes = images[index]!;
      if (bytes instanceof Error) {
        failures.push({ item, error: bytes });
        return;
      }
      const imageSha256 = createHash('sha256').update(bytes).digest();
      readBytes += bytes.length;
      pending.push({
        item,
        externalId,
        bytes: readBytes > keptBytes ? null : bytes,
        imageSha256,
        visitorId: null,
      });
    });
  }

  const outcomes: { key: string; outcome: ItemOutcome }[] = [];
  const toAnalyze: Pending[] = [];
  if (pending.length > 0) {
    // A source run again: the same bytes for the same visitor and model need no vision work.
    const existing = await findVisitorsImageFaces(context.db, pending);
    pending.forEach((entry, index) => {
      const found = existing[index];
      entry.visitorId = found?.visitorId ?? null;
      const same = found?.faces.find((face) => face.modelId === context.modelId);
      if (same) {
        outcomes.push({
          key: entry.item.key,
          outcome: {
            status: 'skipped',
            reason: `the visitor already has a face of model ${context.modelId} from this image`,
            faceId: same.id,
          },
        });
      } else {
        toAnalyze.push(entry);
      }
    });
  }

  // One task at a time: the batch worker's concurrency bounds the tasks in the pool.
  const faces: ChosenFace[] = [];
  for (let start = 0; start < toAnalyze.length; start += IMAGES_PER_TASK) {
    const group: Pending[] = [];
    const images: Buffer[] = [];
    for (const entry of toAnalyze.slice(start, start + IMAGES_PER_TASK)) {
      const bytes = await attempt(entry.item, () => takeBytes(context, entry));
      if (bytes === undefined) continue;
      group.push(entry);
      images.push(bytes);
    }
    if (group.length === 0) continue;
    let analyses: (ImageAnalysis | FaceGateError)[];
    try {
      analyses = await context.pool.analyzeEach(images, {});
    } catch (error) {
      for (const entry of group) failures.push({ item: entry.item, error });
      continue;
    }
    group.forEach((entry, index) => {
      const analysis = analyses[index]!;
      if (analysis instanceof Error) {
        failures.push({ item: entry.item, error: analysis });
        return;
      }
      const choice = chooseFace(
        analysis.faces,
        analysis.image,
        entry.item.multipleFaces,
        context.config.enrolMinFaceSize,
      );
      if ('outcome' in choice) {
        outcomes.push({ key: entry.item.key, outcome: choice.outcome });
        return;
      }
      faces.push({
        entry,
        choice,
        modelId: analysis.modelId,
        facesDetected: analysis.faces.length,
      });
    });
  }

  const [storeFailures] = await Promise.all([
    storeFaces(context, faces),
    recordItemOutcomes(context.db, items[0]?.batchId ?? '', outcomes),
    reextracted,
  ]);
  failures.push(...storeFailures);
  return failures;
}

/**
 * Returns the bytes of an image for its analysis, read again when they were not kept.
 * They are handed to the pool, so the entry keeps none.
 */
async function takeBytes(context: BatchContext, entry: Pending): Promise<Buffer> {
  const inMemory = entry.bytes;
  entry.bytes = null;
  if (inMemory !== null) return inMemory;
  const bytes = await readItemImage(context, entry.item);
  // The file may have changed since it was hashed, so the face is stored under the new hash.
  entry.imageSha256 = createHash('sha256').update(bytes).digest();
  return bytes;
}

/** A face chosen for storing, with its item and what the analysis found. */
interface ChosenFace {
  entry: Pending;
  choice: { face: ImageAnalysis['faces'][number]; faceSize: number; reason: string | null };
  modelId: string;
  facesDetected: number;
}

/**
 * Creates the visitors that do not exist yet, then stores the faces and records their
 * items. Returns the items whose face could not be stored.
 */
async function storeFaces(
  context: BatchContext,
  faces: readonly ChosenFace[],
): Promise<ItemFailure[]> {
  if (faces.length === 0) return [];
  const newVisitors = faces
    .filter(({ entry }) => entry.visitorId === null)
    .map(({ entry }) => ({
      externalId: entry.externalId,
      name: entry.item.name ?? entry.externalId,
    }));
  if (newVisitors.length > 0) {
    try {
      const { batchId, createdBy } = faces[0]!.entry.item;
      const visitors = await findOrCreateVisitors(context.db, newVisitors, batchId, {
        actor: { keyId: createdBy },
        details: { batchId },
      });
      for (const { entry } of faces) {
        entry.visitorId ??= visitors.get(entry.externalId)?.id ?? null;
      }
    } catch (error) {
      return faces.map(({ entry }) => ({ item: entry.item, error }));
    }
  }

  // A visitor is missing only when the batch was cancelled: its items stay unfinished.
  const storable = faces.filter(({ entry }) => entry.visitorId !== null);
  if (storable.length === 0) return [];
  const entries = storable.map(
    ({ entry, choice, modelId, facesDetected }): ItemFaceEntry => ({
      key: entry.item.key,
      face: {
        visitorId: entry.visitorId!,
        modelId,
        embedding: choice.face.embedding,
        detectionScore: choice.face.score,
        box: choice.face.box,
        faceSize: choice.faceSize,
        imageSha256: entry.imageSha256,
        audit: {
          actor: { keyId: entry.item.createdBy },
          details: { batchId: entry.item.batchId },
        },
      },
      options: {
        replaceOtherModels: false,
        facesDetected,
        reason: choice.reason ?? undefined,
      },
    }),
  );
  const results = await storeItemFaces(context.db, storable[0]!.entry.item.batchId, entries);
  const failures: ItemFailure[] = [];
  results.forEach((result, index) => {
    if (result instanceof Error)
      failures.push({ item: storable[index]!.entry.item, error: result });
  });
  return failures;
}

function checkItem(context: BatchContext, item: ClaimedBatchItem): string {
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
  return item.externalId;
}

async function readItemImage(context: BatchContext, item: ClaimedBatchItem): Promise<Buffer> {
  const [result] = await readItemImages(context, [item]);
  if (result instanceof Error) throw result;
  return result!;
}

/**
 * Reads the images of items, in order: the result at index i is the bytes of items[i]
 * or its error. Files go to the file reader thread together, table images are read from
 * the database one by one.
 */
async function readItemImages(
  context: BatchContext,
  items: readonly ClaimedBatchItem[],
): Promise<(Buffer | Error)[]> {
  const maxImageBytes = context.config.maxImageBytes;
  const files: ClaimedBatchItem[] = [];
  const tableReads: Promise<Buffer | Error>[] = [];
  for (const item of items) {
    const source = item.source;
    if (source.type === 'table' && source.imageEncoding !== 'path') {
      tableReads.push(
        readTableImage(context.db, source, item.locator!, maxImageBytes).catch((error: unknown) =>
          error instanceof Error ? error : new Error(String(error)),
        ),
      );
    } else {
      files.push(item);
    }
  }
  const [fileResults, tableResults] = await Promise.all([
    files.length === 0
      ? []
      : context.files.read(
          files.map((item) => item.locator!),
          maxImageBytes,
          context.config.batchSourceRoots,
        ),
    Promise.all(tableReads),
  ]);

  // Put the results back in the order of the items.
  let nextFile = 0;
  let nextTable = 0;
  return items.map((item) =>
    files[nextFile] === item ? fileResults[nextFile++]! : tableResults[nextTable++]!,
  );
}

async function record(
  context: BatchContext,
  item: ClaimedBatchItem,
  outcome: ItemOutcome,
): Promise<ItemResult> {
  const recorded = await recordItemOutcome(context.db, item.batchId, item.key, outcome);
  return recorded ? outcome.status : 'none';
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
    analysis.image,
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
