export * from './align.js';
export * from './decode.js';
export * from './detector.js';
export * from './embedder.js';
export * from './manifest.js';
export * from './pipeline.js';
export * from './session.js';
export * from './similarity.js';
export type * from './types.js';
