import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/**
 * Fields never written to a log, at the top level or one level down: API keys and
 * credentials, and face embeddings, which are biometric data. The code does not log
 * them; this is the second line of defence for a field added later.
 */
const SECRET_FIELDS = [
  'apiKey',
  'api_key',
  'authorization',
  'password',
  'keySha256',
  'embedding',
  'embeddings',
  'vector',
];
const REDACTED_PATHS = [
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  'headers["x-api-key"]',
  '*.headers["x-api-key"]',
];

/**
 * Creates the structured JSON logger of one process. Every line carries the
 * service name and pid; request-scoped lines add requestId and jobId through
 * `logger.child({ requestId })`.
 */
export function createLogger(service: string, level: LevelWithSilent = 'info'): Logger {
  return pino({
    level,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    base: { service, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

/**
 * Returns a function that makes `logger.child(bindings)` on its first call and returns the
 * same child on later calls. pino redacts and serializes the bindings when it makes a child,
 * so per-request code that seldom logs makes the child only when it writes a line.
 */
export function lazyChild(logger: Logger, bindings: Record<string, unknown>): () => Logger {
  let child: Logger | undefined;
  return () => (child ??= logger.child(bindings));
}

export { type StopSignals, handleStopSignals } from './stop-signals.js';
