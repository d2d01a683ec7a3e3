export * from './proxy.js';
export * from './stack.js';
