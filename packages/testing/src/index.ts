export * from './proxy.js';
export * from './stack.js';
export * from './vectors.js';
export * from './schema-dump.js';
