export * from './keys.js';
export * from './match-stream.js';
export * from './messages.js';
export * from './queues.js';
export * from './redis.js';
export * from './thresholds.js';
