/**
 * The planning job of a batch: enumerates the source, stores its items and queues a job
 * for each unfinished one, chunk by chunk. Running it again (a retry, a crash, a resume at
 * start-up) stores nothing twice and queues only what is still unfinished, under the same
 * job ids.
 */
import { addBatchItemJobs } from '@facegate/contracts';
import { FaceGateError } from '@facegate/errors';
import {
  completeBatchIfFinished,
  countBatchItems,
  getBatch,
  markBatchPlanned,
  markItemsQueued,
  startBatchPlanning,
  upsertBatchItems,
} from '@facegate/db';

import type { BatchContext } from './context.js';
import { enumerateSource } from './sources.js';

/** Items stored and queued per round trip: one insert and one addBulk of this many. */
export const PLAN_CHUNK_SIZE = 500;

/**
 * Items per job in the last chunk of a source. Its jobs run last, and smaller ones there
 * keep both threads busy until the end instead of leaving one job of BATCH_ITEMS_PER_JOB
 * images to finish alone.
 */
export const LAST_CHUNK_ITEMS_PER_JOB = 16;

export interface PlanResult {
  /** False when the batch was no longer planning or running, or was cancelled meanwhile. */
  planned: boolean;
  items: number;
  queued: number;
  ignored: number;
}

export async function planBatch(context: BatchContext, batchId: string): Promise<PlanResult> {
  const result: PlanResult = { planned: false, items: 0, queued: 0, ignored: 0 };
  const batch = await startBatchPlanning(context.db, batchId, context.modelId);
  if (!batch) return result;

  const counters = { ignored: 0 };
  // Queued first, marked second: a crash in between leaves items 'pending' whose jobs
  // exist, and the next planning run queues them under the same ids (no copies).
  const queue = async (
    chunk: { keys: string[]; unfinished: string[] },
    itemsPerJob?: number,
  ): Promise<void> => {
    if (chunk.unfinished.length === 0) return;
    const unfinished = new Set(chunk.unfinished);
    await addBatchItemJobs(context.queues, batchId, chunk.keys, unfinished, itemsPerJob);
    await markItemsQueued(context.db, batchId, chunk.unfinished);
  };
  // A chunk is queued when the next one has been read, so the last one is known as such.
  let unqueued = { keys: [] as string[], unfinished: [] as string[] };
  for await (const chunk of enumerateSource(
    context.db,
    batch.source,
    PLAN_CHUNK_SIZE,
    counters,
    context.config.batchSourceRoots,
  )) {
    // A cancel between chunks stops planning; items already queued end without work.
    const current = await getBatch(context.db, batchId);
    if (current?.status !== 'planning' && current?.status !== 'running') return result;

    // NOTE: the source is counted while it is planned, so the items of earlier chunks may
    // be enrolled before the limit is found exceeded. The batch then fails, and the rest
    // of its queued items end without work.
    const { batchMaxItems } = context.config;
    const photos = chunk.filter((item) => item.status !== 'ignored');
    if (result.items + photos.length > batchMaxItems) {
      throw new FaceGateError(
        'BATCH_TOO_LARGE',
        `the source has more than ${batchMaxItems} images; the limit is BATCH_MAX_ITEMS=${batchMaxItems}`,
        { details: { maxItems: batchMaxItems } },
      );
    }

    const unfinished = await upsertBatchItems(context.db, batchId, chunk);
    result.items += photos.length;
    result.queued += unfinished.length;
    // A chunk of ignored entries only has nothing to queue, and must not take the place of
    // the last chunk of photos.
    if (photos.length === 0) continue;
    await queue(unqueued);
    unqueued = { keys: photos.map((item) => item.key), unfinished };
  }
  await queue(unqueued, LAST_CHUNK_ITEMS_PER_JOB);

  result.ignored = counters.ignored;
  await markBatchPlanned(context.db, batchId, counters.ignored);
  result.planned = true;
  context.logger.info(
    {
      batchId,
      items: result.items,
      queued: result.queued,
      ignored: result.ignored,
      modelId: batch.modelId,
    },
    `batch planned: ${result.items} items`,
  );
  // Every item may have finished already (all skipped, or an empty source).
  await finishIfComplete(context, batchId);
  return result;
}

/** Marks the batch completed when no item is left, and logs it once with the counts. */
export async function finishIfComplete(context: BatchContext, batchId: string): Promise<void> {
  if (!(await completeBatchIfFinished(context.db, batchId))) return;
  const counts = await countBatchItems(context.db, batchId);
  context.logger.info({ batchId, ...counts }, 'batch completed');
}
