/**
 * Owns the matcher's face index and keeps it equal to the database. At start it loads
 * the saved index or rebuilds it from PostgreSQL. Then it follows the face change feed
 * in seq order and saves the index again shortly after each change.
 */
import { performance } from 'node:perf_hooks';

import type { Database, FaceChange } from '@facegate/db';
import {
  getInstanceId,
  countFacesByModel,
  listenForChanges,
  maxChangeSeq,
  readChanges,
  streamEmbeddings,
  transaction,
} from '@facegate/db';
import type { Unlisten } from '@facegate/db';
import { FaceGateError, isFaceGateError } from '@facegate/errors';
import { FaceIndex } from '@facegate/index';
import type { FaceCandidate, FaceIndexStats, VisitorScoring } from '@facegate/index';
import type { Logger } from '@facegate/logger';

import { FailureLog } from './failure-log.js';
import type { EmbedderModel } from './models.js';

/**
 * Lifecycle state: 'loading' reads the saved index, 'rebuilding' builds it from the
 * database, 'ready' serves, and 'refusing' rejects requests because the database
 * contains faces of another model.
 */
export type IndexState = 'loading' | 'rebuilding' | 'ready' | 'refusing';

/** Origin of this process's index: loaded from INDEX_DIR or rebuilt from the database. */
export type IndexOrigin = 'loaded' | 'rebuilt';

export interface HnswSettings {
  M: number;
  efConstruction: number;
  ef: number;
  initialCapacity: number;
  exactSearchMaxFaces: number;
}

export interface IndexServiceOptions {
  db: Database;
  /** The model whose faces the index holds; faces of other models never enter it. */
  model: EmbedderModel;
  /** Folder of the saved index. */
  indexDir: string;
  /** Settings of a rebuilt index; a loaded index keeps the M and efConstruction it was built with. */
  hnsw: HnswSettings;
  /** Score of a visitor with several faces in search (IDENTIFY_SCORING). Default 'fused'. */
  scoring?: VisitorScoring;
  /** Milliseconds from the first unsaved change to the save that includes it and later ones. */
  persistDelayMs: number;
  /** Milliseconds between reads of the feed that cover notifications lost while disconnected. */
  feedPollIntervalMs: number;
  logger: Logger;
  /** Called after each state change and each batch of applied changes, e.g. to send a heartbeat. */
  onUpdate?: () => void;
}

/** Index state as the heartbeat reports it. */
export type IndexStatus = {
  state: IndexState;
  /** Reason the matcher rejects requests, or reason for the rebuild in progress. */
  reason?: string;
  /** Null until the index is loaded or built. */
  index: FaceIndexStats | null;
  rebuild: {
    lastDurationMs: number | null;
    lastAt: string | null;
    path: IndexOrigin | null;
    /** Reason the saved index could not be used, when path is 'rebuilt'. */
    reason?: string;
  };
  /** Stored faces of models other than the index's, by model id. */
  otherModels: Record<string, number>;
  scoring: VisitorScoring;
  /**
   * Feed seq up to which the saved files match the index, so a face deleted at or before
   * it is gone from memory and disk. The gateway waits on it to confirm an erasure.
   */
  persistedSeq: number;
};

/** Changes read from the feed per query; each carries a 512-byte embedding at 128 dimensions. */
export const FEED_BATCH_SIZE = 1000;

/** A catch-up that takes longer than this is logged as a warning. */
export const SLOW_CATCH_UP_MS = 1000;

/**
 * Delay of the save after a face is deleted. It is short because a deletion request waits
 * until every matcher has saved an index without the face. It is not zero, so that the
 * deletions of one request share a save.
 */
const ERASURE_PERSIST_DELAY_MS = 50;

/** Milliseconds from a change notification to the catch-up that reads it and the changes after it. */
const NOTIFIED_CATCH_UP_DELAY_MS = 20;

/** Smallest delay before retrying a failed save, so a full disk does not cause a save loop. */
const PERSIST_RETRY_MIN_MS = 1000;

/** How often waitForSeq reads the feed again while a change it waits for is not committed yet. */
const SEQ_RECHECK_INTERVAL_MS = 50;

interface FeedSnapshot {
  /** Highest feed seq committed when the snapshot was taken. */
  seq: number;
  facesByModel: Map<string, number>;
}

type LoadOutcome = { index: FaceIndex; replayedChanges: number } | { rebuildReason: string };

export class IndexService {
  private readonly db: Database;
  private readonly model: EmbedderModel;
  private readonly options: IndexServiceOptions;
  private readonly logger: Logger;

  private stateValue: IndexState = 'loading';
  private reason: string | undefined;
  private index: FaceIndex | null = null;
  private otherModels = new Map<string, number>();
  private ownFaceCount = 0;
  private rebuildInfo: IndexStatus['rebuild'] = { lastDurationMs: null, lastAt: null, path: null };

  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  private stopRequested = false;

  private catchUpRun: Promise<void> | null = null;
  private catchUpRequested = false;
  private otherModelChangeSeen = false;
  private readonly feedFailures: FailureLog;
  private unlisten: Unlisten | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private notifyTimer: NodeJS.Timeout | null = null;

  /** True when the index has changed since its last successful save began. */
  private dirty = false;
  private saveInProgress: Promise<void> | null = null;
  private persistTimer: NodeJS.Timeout | null = null;
  /** performance.now() at which the scheduled save runs. */
  private persistDueMs = 0;
  private persistedSeqValue = 0;
  /** The database's instance id, recorded in saved indexes (see getInstanceId). */
  private datasetId: string | undefined;
  private readonly persistFailures: FailureLog;

  constructor(options: IndexServiceOptions) {
    this.options = options;
    this.db = options.db;
    this.model = options.model;
    this.logger = options.logger;
    this.feedFailures = new FailureLog(this.logger, {
      failed: 'reading the face change feed failed; the index is not updated until it succeeds',
      recovered: 'the face change feed is readable again',
    });
    this.persistFailures = new FailureLog(this.logger, {
      failed: `saving the face index to ${options.indexDir} failed; retrying after the next delay`,
      recovered: `the face index is saved to ${options.indexDir} again`,
    });
  }

  /** Score of a visitor with several faces in search. */
  get scoring(): VisitorScoring {
    return this.options.scoring ?? 'fused';
  }

  get modelId(): string {
    return this.model.modelId;
  }

  get state(): IndexState {
    return this.stateValue;
  }

  /** Seq of the last feed change applied to the index; 0 before the index exists. */
  get lastSeq(): number {
    return this.index?.lastSeq ?? 0;
  }

  /**
   * Loads or rebuilds the index, catches up with the feed and starts following it.
   * Resolves when the index serves, in state 'ready' or 'refusing'.
   * Throws when the database fails, or FaceGateError NOT_READY when `stop` interrupted it.
   */
  start(): Promise<void> {
    this.starting ??= this.startOnce();
    return this.starting;
  }

  private async startOnce(): Promise<void> {
    const startedMs = performance.now();
    const snapshot = await readFeedSnapshot(this.db);
    this.datasetId = await getInstanceId(this.db);
    this.recordModelCounts(snapshot.facesByModel);

    const loaded = await this.loadSaved(snapshot);
    let index: FaceIndex;
    if ('index' in loaded) {
      index = loaded.index;
      this.dirty = loaded.replayedChanges > 0;
      this.recordOrigin('loaded', startedMs);
      this.logger.info(
        {
          path: 'loaded',
          indexDir: this.options.indexDir,
          ...countsOf(index),
          replayedChanges: loaded.replayedChanges,
          durationMs: this.rebuildInfo.lastDurationMs,
        },
        'face index loaded from disk',
      );
    } else {
      this.logger.info(
        { reason: loaded.rebuildReason, indexDir: this.options.indexDir },
        'rebuilding the face index from the database',
      );
      this.setState('rebuilding', loaded.rebuildReason);
      index = await this.rebuild(snapshot.seq);
      this.dirty = true;
      this.recordOrigin('rebuilt', startedMs, loaded.rebuildReason);
      this.logger.info(
        {
          path: 'rebuilt',
          reason: loaded.rebuildReason,
          ...countsOf(index),
          durationMs: this.rebuildInfo.lastDurationMs,
        },
        'face index rebuilt from the database',
      );
    }
    this.throwIfStopRequested();

    this.index = index;
    await this.catchUp();
    this.setState(this.otherModels.size > 0 ? 'refusing' : 'ready', this.modelMixReason());
    await this.followFeed();

    // A rebuild can take minutes, so save it now rather than risk another after a crash.
    // Changes replayed onto a loaded index may delete faces that its files still contain,
    // so that index is saved now too.
    if ('rebuildReason' in loaded || this.dirty) await this.persistLogged();
    else this.persistedSeqValue = index.lastSeq;
  }

  /** Returns the saved index caught up to `snapshot`, or why it cannot be used. */
  private async loadSaved(snapshot: FeedSnapshot): Promise<LoadOutcome> {
    const { indexDir } = this.options;
    let unusableReason: string | undefined;
    let index: FaceIndex | null;
    try {
      index = await FaceIndex.load(
        indexDir,
        { ...this.model, datasetId: this.datasetId },
        {
          ef: this.options.hnsw.ef,
          exactSearchMaxFaces: this.options.hnsw.exactSearchMaxFaces,
          onRebuildNeeded: (reason) => {
            unusableReason = reason;
          },
        },
      );
    } catch (error) {
      if (isFaceGateError(error) && error.code === 'MODEL_MISMATCH') {
        const savedModel = error.details?.persistedModelId;
        const savedModelName = typeof savedModel === 'string' ? savedModel : 'unknown';
        return {
          rebuildReason: `the saved index was built from model '${savedModelName}', not '${this.modelId}'`,
        };
      }
      throw error;
    }
    if (index === null) {
      return { rebuildReason: unusableReason ?? `no saved index in ${indexDir}` };
    }

    if (index.lastSeq > snapshot.seq) {
      return {
        rebuildReason:
          `the saved index has applied the change feed up to seq ${index.lastSeq}, ` +
          `but the database feed ends at seq ${snapshot.seq}; the database was reset or replaced`,
      };
    }

    // Replaying only up to the snapshot makes the face count comparable with the snapshot's.
    const replayedChanges = await this.applyFeed(index, snapshot.seq);
    const size = index.stats().size;
    const expected = snapshot.facesByModel.get(this.modelId) ?? 0;
    if (size !== expected) {
      return {
        rebuildReason:
          `the saved index contains ${size} faces after replaying the feed to seq ${snapshot.seq}, ` +
          `but the database contains ${expected} faces of model '${this.modelId}'`,
      };
    }
    return { index, replayedChanges };
  }

  /**
   * Builds the index from every stored face of the model. `fromSeq` must be read before
   * the faces are streamed: replaying from it then covers every change made meanwhile,
   * and changes that the stream already contains are applied twice without effect.
   */
  private async rebuild(fromSeq: number): Promise<FaceIndex> {
    const index = new FaceIndex({
      modelId: this.model.modelId,
      dim: this.model.dim,
      datasetId: this.datasetId,
      ...this.options.hnsw,
    });
    for await (const batch of streamEmbeddings(this.db, this.modelId)) {
      this.throwIfStopRequested();
      for (const face of batch) this.addFace(index, face.faceId, face.visitorId, face.embedding);
    }
    index.setLastSeq(fromSeq);
    await this.applyFeed(index);
    return index;
  }

  /**
   * Applies feed changes after `index.lastSeq`, up to `untilSeq`, and returns how many
   * it applied. Only one caller at a time may run it on the live index (see catchUp).
   */
  private async applyFeed(index: FaceIndex, untilSeq = Number.POSITIVE_INFINITY): Promise<number> {
    let applied = 0;
    for (;;) {
      const changes = await readChanges(this.db, index.lastSeq, FEED_BATCH_SIZE);
      const batch = changes.filter((change) => change.seq <= untilSeq);
      // No await from here to the end of the batch, so a save captures whole batches only.
      for (const change of batch) this.applyChange(index, change);
      applied += batch.length;

      if (batch.length > 0 && index === this.index) {
        this.dirty = true;
        const erases = batch.some((change) => change.op === 'delete');
        this.schedulePersist(
          erases
            ? Math.min(ERASURE_PERSIST_DELAY_MS, this.options.persistDelayMs)
            : this.options.persistDelayMs,
        );
        this.options.onUpdate?.();
      }
      if (batch.length < FEED_BATCH_SIZE) return applied;
    }
  }

  private applyChange(index: FaceIndex, change: FaceChange): void {
    if (change.modelId !== this.modelId) {
      this.otherModelChangeSeen = true;
    } else if (change.op === 'delete') {
      this.skipRejectedFace(change.faceId, change.visitorId, change.seq, () =>
        index.remove(change.faceId),
      );
    } else if (change.embedding !== null && change.visitorId !== null) {
      this.addFace(index, change.faceId, change.visitorId, change.embedding, change.seq);
    }
    // An add without an embedding is a face deleted since; its delete comes later in the feed.
    index.setLastSeq(change.seq);
  }

  private addFace(
    index: FaceIndex,
    faceId: number,
    visitorId: string,
    vector: Float32Array,
    seq?: number,
  ): void {
    this.skipRejectedFace(faceId, visitorId, seq, () => index.add(faceId, visitorId, vector));
  }

  /**
   * Runs an index update, and logs and skips a face that the index rejects as invalid,
   * because one bad row must not stop the feed.
   * NOTE: a skipped face (an id above 2^32 - 1, a vector of the wrong length) makes the
   * face count differ from the database's, so each start rebuilds the index again.
   */
  private skipRejectedFace(
    faceId: number,
    visitorId: string | null,
    seq: number | undefined,
    update: () => unknown,
  ): void {
    try {
      update();
    } catch (error) {
      if (!isFaceGateError(error) || error.code !== 'INVALID_REQUEST') throw error;
      this.logger.error(
        { err: error, faceId, visitorId, seq },
        'stored face skipped: the face index rejects it as invalid',
      );
    }
  }

  /**
   * Applies every change committed so far. Calls during a run join it and make it read
   * the feed once more, so changes are applied by one loop at a time, in seq order.
   */
  catchUp(): Promise<void> {
    if (this.index === null) return Promise.resolve();
    if (this.catchUpRun !== null) {
      this.catchUpRequested = true;
      return this.catchUpRun;
    }
    const run = this.runCatchUp(this.index).finally(() => {
      this.catchUpRun = null;
    });
    this.catchUpRun = run;
    return run;
  }

  private async runCatchUp(index: FaceIndex): Promise<void> {
    do {
      this.catchUpRequested = false;
      const startedMs = performance.now();
      const fromSeq = index.lastSeq;
      const applied = await this.applyFeed(index);

      if (this.otherModelChangeSeen) {
        this.otherModelChangeSeen = false;
        this.recordModelCounts(await countFacesByModel(this.db));
        if (this.stateValue === 'ready' || this.stateValue === 'refusing') {
          this.setState(this.otherModels.size > 0 ? 'refusing' : 'ready', this.modelMixReason());
        }
      }

      const durationMs = Math.round(performance.now() - startedMs);
      if (durationMs > SLOW_CATCH_UP_MS) {
        this.logger.warn(
          { fromSeq, toSeq: index.lastSeq, appliedChanges: applied, durationMs },
          'catching up with the face change feed was slow',
        );
      }
    } while (this.catchUpRequested && !this.stopRequested);
  }

  /** Starts a catch-up for a notification or a poll; failures are logged, and the next poll retries. */
  private requestCatchUp(): void {
    this.catchUp().then(
      () => this.feedFailures.succeeded(),
      (error: unknown) => this.feedFailures.failed(error, { lastSeq: this.lastSeq }),
    );
  }

  /**
   * Starts a catch-up shortly after a notification, so that the faces of a busy moment
   * (a batch stores about a hundred per second) are read in one query instead of one
   * query and one heartbeat each. Read-your-writes waits do not pass through this delay.
   */
  private requestNotifiedCatchUp(): void {
    if (this.notifyTimer !== null || this.stopRequested) return;
    this.notifyTimer = setTimeout(() => {
      this.notifyTimer = null;
      this.requestCatchUp();
    }, NOTIFIED_CATCH_UP_DELAY_MS);
    this.notifyTimer.unref();
  }

  private async followFeed(): Promise<void> {
    this.unlisten = await listenForChanges(
      this.db,
      (seq) => {
        if (seq > this.lastSeq) this.requestNotifiedCatchUp();
      },
      // Notifications sent while the connection was down are lost, so read the feed after each (re)connect.
      { onListen: () => this.requestCatchUp() },
    );
    this.pollTimer = setInterval(() => this.requestCatchUp(), this.options.feedPollIntervalMs);
    this.pollTimer.unref();
  }

  /**
   * Catches up until the index has applied the feed to `minSeq`, for read-your-writes.
   * Returns false when `timeoutMs` passes first; feed errors are logged, not thrown.
   */
  async waitForSeq(minSeq: number, timeoutMs: number): Promise<boolean> {
    const deadlineMs = performance.now() + timeoutMs;
    for (;;) {
      if (this.lastSeq >= minSeq) return true;
      const remainingMs = deadlineMs - performance.now();
      if (remainingMs <= 0) return false;

      // A database that hangs must not hold the job past the deadline.
      try {
        if (await withTimeout(this.catchUp(), remainingMs)) this.feedFailures.succeeded();
      } catch (error) {
        this.feedFailures.failed(error, { lastSeq: this.lastSeq, minSeq });
      }
      if (this.lastSeq >= minSeq) return true;

      // The change is not committed yet, or the feed is unreadable: read again shortly.
      const leftMs = Math.max(0, deadlineMs - performance.now());
      await sleep(Math.min(SEQ_RECHECK_INTERVAL_MS, leftMs));
    }
  }

  /**
   * Throws FaceGateError MODEL_MISMATCH while the database contains faces of another model,
   * and NOT_READY before the index exists.
   */
  assertServing(): void {
    if (this.stateValue === 'refusing') {
      throw new FaceGateError('MODEL_MISMATCH', this.reason ?? 'the database mixes face models', {
        details: { modelId: this.modelId, otherModels: Object.fromEntries(this.otherModels) },
      });
    }
    if (this.index === null) {
      throw new FaceGateError(
        'NOT_READY',
        `the face index is not ready yet (state ${this.stateValue}); retry shortly`,
      );
    }
  }

  /** Finds up to `k` distinct visitors nearest to `vector`. Throws like FaceIndex.search. */
  search(vector: ArrayLike<number>, k: number): FaceCandidate[] {
    this.assertServing();
    return this.index!.search(vector, { k, scoring: this.scoring });
  }

  status(): IndexStatus {
    const status: IndexStatus = {
      state: this.stateValue,
      index: this.index?.stats() ?? null,
      rebuild: { ...this.rebuildInfo },
      otherModels: Object.fromEntries(this.otherModels),
      scoring: this.scoring,
      persistedSeq: this.persistedSeqValue,
    };
    if (this.reason !== undefined) status.reason = this.reason;
    return status;
  }

  /**
   * Saves the index when it changed since the last save, after any save in progress.
   * Throws FaceGateError INTERNAL when writing fails.
   */
  async persist(): Promise<void> {
    // Wait for a save in progress first, so that when this resolves no save is still writing.
    while (this.saveInProgress !== null) await this.saveInProgress.catch(() => undefined);
    const index = this.index;
    if (index === null || !this.dirty) return;

    this.dirty = false;
    const save = this.save(index);
    this.saveInProgress = save;
    try {
      await save;
    } catch (error) {
      this.dirty = true;
      throw error;
    } finally {
      this.saveInProgress = null;
    }
  }

  private async save(index: FaceIndex): Promise<void> {
    const startedMs = performance.now();
    const result = await index.save(this.options.indexDir);
    this.persistedSeqValue = Math.max(this.persistedSeqValue, result.lastSeq);
    this.options.onUpdate?.();
    this.logger.debug(
      {
        generation: result.generation,
        ...countsOf(index),
        durationMs: Math.round(performance.now() - startedMs),
      },
      'face index saved',
    );
    if (result.cleanupFailures.length > 0) {
      this.logger.warn(
        { directory: result.directory, cleanupFailures: result.cleanupFailures },
        'face index saved, but old files could not be deleted',
      );
    }
  }

  private async persistLogged(): Promise<void> {
    try {
      await this.persist();
      this.persistFailures.succeeded();
    } catch (error) {
      this.persistFailures.failed(error, { lastSeq: this.lastSeq });
      this.schedulePersist(Math.max(this.options.persistDelayMs, PERSIST_RETRY_MIN_MS));
    }
  }

  /** Schedules a save in `delayMs`, or keeps the one already scheduled if it runs sooner. */
  private schedulePersist(delayMs = this.options.persistDelayMs): void {
    if (this.stopRequested) return;
    const dueMs = performance.now() + delayMs;
    if (this.persistTimer !== null) {
      if (this.persistDueMs <= dueMs) return;
      clearTimeout(this.persistTimer);
    }
    this.persistDueMs = dueMs;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = null;
      void this.persistLogged();
    }, delayMs);
    this.persistTimer.unref();
  }

  /**
   * Stops following the feed, waits for a running catch-up and saves the index once more.
   * Every step runs even when an earlier one fails; failures are logged, never thrown.
   * Safe to call twice, and during `start`, which rejects with NOT_READY when it is still
   * loading or rebuilding.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    this.stopRequested = true;
    // A start in progress stops at its next batch; its error is the caller's to log.
    await this.starting?.catch(() => undefined);

    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    if (this.notifyTimer !== null) clearTimeout(this.notifyTimer);
    this.notifyTimer = null;
    if (this.persistTimer !== null) clearTimeout(this.persistTimer);
    this.pollTimer = null;
    this.persistTimer = null;
    if (this.unlisten !== null) {
      await this.unlisten().catch((error: unknown) => {
        this.logger.error({ err: error }, 'stopping the change feed listener failed');
      });
    }
    await this.catchUpRun?.catch(() => undefined);

    try {
      await this.persist();
    } catch (error) {
      this.logger.error(
        { err: error, lastSeq: this.lastSeq },
        'saving the face index at shutdown failed; the next start replays the feed from the last save',
      );
    }
  }

  private throwIfStopRequested(): void {
    if (this.stopRequested) {
      throw new FaceGateError('NOT_READY', 'the matcher stopped before the face index was ready');
    }
  }

  private recordModelCounts(facesByModel: Map<string, number>): void {
    this.otherModels = new Map(
      [...facesByModel].filter(([modelId, count]) => modelId !== this.modelId && count > 0),
    );
    this.ownFaceCount = facesByModel.get(this.modelId) ?? 0;
  }

  private modelMixReason(): string | undefined {
    if (this.otherModels.size === 0) return undefined;
    const others = [...this.otherModels]
      .map(([modelId, count]) => `${count} of model '${modelId}'`)
      .join(', ');
    return (
      `the database holds faces of other models (${others}) besides ${this.ownFaceCount} of ` +
      `the current model '${this.modelId}', and features of different models cannot be compared; ` +
      `re-extract the features of those faces with '${this.modelId}' and delete the old ones`
    );
  }

  private setState(state: IndexState, reason: string | undefined): void {
    const changed = state !== this.stateValue || reason !== this.reason;
    const previous = this.stateValue;
    this.stateValue = state;
    this.reason = reason;
    if (!changed) return;

    if (state === 'refusing') {
      this.logger.error(
        { reason, modelId: this.modelId, otherModels: Object.fromEntries(this.otherModels) },
        'rejecting identify requests: the database mixes face models',
      );
    } else if (state === 'ready' && previous === 'refusing') {
      this.logger.info({ modelId: this.modelId }, 'faces of other models are gone; serving again');
    }
    this.options.onUpdate?.();
  }

  private recordOrigin(path: IndexOrigin, startedMs: number, reason?: string): void {
    this.rebuildInfo = {
      lastDurationMs: Math.round(performance.now() - startedMs),
      lastAt: new Date().toISOString(),
      path,
    };
    if (reason !== undefined) this.rebuildInfo.reason = reason;
  }
}

/**
 * Reads the feed position and the face counts in one snapshot, so that the counts
 * describe exactly the faces that the feed up to `seq` produced.
 */
async function readFeedSnapshot(db: Database): Promise<FeedSnapshot> {
  return transaction(db, async (tx) => {
    await tx.sql`set transaction isolation level repeatable read, read only`;
    const seq = await maxChangeSeq(tx);
    const facesByModel = await countFacesByModel(tx);
    return { seq, facesByModel };
  });
}

function countsOf(index: FaceIndex): { faces: number; visitors: number; lastSeq: number } {
  const stats = index.stats();
  return { faces: stats.size, visitors: stats.visitors, lastSeq: stats.lastSeq };
}

/** Resolves true when `promise` settles in time, false after `timeoutMs`; rejects with its error. */
async function withTimeout(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
