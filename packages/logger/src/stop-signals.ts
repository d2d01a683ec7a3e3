import type { Logger } from 'pino';

export interface StopSignals {
  /** Hands SIGTERM and SIGINT over to `shutdown`, once start-up is complete. */
  started(shutdown: (signal: string) => Promise<void>): void;
}

/**
 * Installs the SIGTERM and SIGINT handlers of a service at the start of its start-up.
 * Until `started` is called, a signal exits at once with code 0 and logs 'stopped': the
 * process has taken no work yet, and start-up may be waiting for Redis or PostgreSQL for
 * as long as they are down. Without this, Node's default action kills the process without
 * a word. After `started`, the first signal runs the shutdown and exits 0 when it ends,
 * and later signals wait for that same shutdown.
 */
export function handleStopSignals(logger: Logger): StopSignals {
  let shutdown: ((signal: string) => Promise<void>) | undefined;
  let stopping: Promise<void> | undefined;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (!shutdown) {
        logger.info({ signal, duringStartup: true }, 'stopped');
        process.exit(0);
      }
      stopping ??= shutdown(signal).then(() => process.exit(0));
    });
  }
  return {
    started(handler) {
      shutdown = handler;
    },
  };
}
