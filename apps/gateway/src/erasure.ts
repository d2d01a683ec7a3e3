/**
 * Confirms that deleted faces are gone from every running matcher. Each matcher reports
 * in its heartbeat the feed seq up to which its saved index files match its memory. A
 * deletion is complete when every matcher has passed the deletion's seq.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { type KeyNames, readHeartbeats } from '@facegate/contracts';
import type { Redis } from 'ioredis';

/** Milliseconds between reads of the matcher heartbeats while waiting. */
const POLL_INTERVAL_MS = 25;

export interface ErasureStatus {
  /** True when every running matcher has erased the faces from memory and disk. */
  complete: boolean;
  /** Matchers that confirmed, by heartbeat id. */
  confirmed: string[];
  /** Matchers still holding the faces in memory or in their saved files, by heartbeat id. */
  pending: string[];
}

/**
 * Waits until every matcher with a live heartbeat reports persistedSeq >= `seq`, or
 * `timeoutMs` passes. With no matcher running, nothing can be confirmed: the saved index
 * of a stopped matcher drops the faces when that matcher starts and catches up.
 */
export async function waitForErasure(
  redis: Redis,
  keys: KeyNames,
  seq: number,
  timeoutMs: number,
): Promise<ErasureStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const matchers = await readHeartbeats(redis, keys, 'matcher');
    const confirmed: string[] = [];
    const pending: string[] = [];
    for (const matcher of matchers) {
      const persistedSeq = Number((matcher.detail as { persistedSeq?: unknown }).persistedSeq ?? 0);
      (persistedSeq >= seq ? confirmed : pending).push(matcher.id);
    }
    const complete = matchers.length > 0 && pending.length === 0;
    if (complete || Date.now() >= deadline) return { complete, confirmed, pending };
    await sleep(POLL_INTERVAL_MS);
  }
}
