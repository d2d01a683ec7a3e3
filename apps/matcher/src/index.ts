/**
 * The matcher's building blocks, for tests and tools; the process itself is main.ts.
 */
export { FailureLog } from './failure-log.js';
export type { FailureMessages } from './failure-log.js';
export { HeartbeatPublisher } from './heartbeat.js';
export type { HeartbeatOptions, HeartbeatReading } from './heartbeat.js';
export { DEFAULT_MIN_SEQ_WAIT_MS, identify, validateMatchJob } from './identify.js';
export type { IdentifyDependencies, MatchIndex } from './identify.js';
export { FEED_BATCH_SIZE, IndexService, SLOW_CATCH_UP_MS } from './index-service.js';
export type {
  HnswSettings,
  IndexOrigin,
  IndexServiceOptions,
  IndexState,
  IndexStatus,
} from './index-service.js';
export { DEFAULT_CLAIM_IDLE_MS, MatchConsumer } from './match-consumer.js';
export type { MatchConsumerOptions } from './match-consumer.js';
export { createMatchProcessor } from './match-job.js';
export type {
  MatchInput,
  MatchJobDependencies,
  MatchOutcome,
  MatchSettlement,
} from './match-job.js';
export { embedderModel } from './models.js';
export { DEFAULT_VISITOR_CACHE_ENTRIES, VisitorCache } from './visitor-cache.js';
export type { VisitorLookup, VisitorName } from './visitor-cache.js';
export type { EmbedderModel } from './models.js';
