// Gateway process: the REST API. Validates requests, hands work to the queues
// and answers with what the workers and the matcher publish. It never runs a model.
import { type Server, createServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';

import { KeyRing, RateLimiter, parseApiKeysVariable } from '@facegate/auth';
import { loadConfigOrExit } from '@facegate/config';
import { createQueues, createRedis, keyNames, waitForRedis } from '@facegate/contracts';
import { openServiceDatabase } from '@facegate/db';
import { FaceGateError } from '@facegate/errors';
import { createLogger, handleStopSignals } from '@facegate/logger';
import { METRIC_PREFIX, StreamMetrics, createRegistry } from '@facegate/metrics';
import type { Counter } from 'prom-client';

import { FAILED_AUTH_LIMIT } from './access.js';
import { createApp } from './app.js';
import { answerClientError } from './client-error.js';
import { Dispatcher } from './dispatcher.js';
import { MatchLogger } from './match-log.js';
import { attachStreamServer, streamOptionsFromConfig } from './stream/index.js';

const SHUTDOWN_TIMEOUT_MS = 15_000;
/** How long a shutdown waits for the replies of requests in progress before failing them. */
const DRAIN_GRACE_MS = 3000;

async function main(): Promise<void> {
  const config = loadConfigOrExit('gateway');
  const logger = createLogger('gateway', config.logLevel);
  const signals = handleStopSignals(logger);
  const keys = keyNames(config.queuePrefix);

  let envKeys;
  try {
    envKeys = parseApiKeysVariable(config.apiKeys);
  } catch (error) {
    if (!(error instanceof FaceGateError)) throw error;
    process.stderr.write(`gateway: invalid configuration:\n  - ${error.message}\n`);
    process.exit(2);
  }

  const db = await openServiceDatabase({
    url: config.databaseUrl,
    migrationUrl: config.databaseMigrationUrl,
    schema: config.databaseSchema,
  });
  const keyRing = new KeyRing({ envKeys, db, logger, required: config.authRequired });
  await keyRing.start();
  const redis = createRedis(config.redisUrl);
  await waitForRedis(redis, (error) => logger.warn({ err: error }, 'waiting for Redis'));
  redis.on('error', (error) => logger.warn({ err: error }, 'Redis connection error'));
  const subscriber = createRedis(config.redisUrl, { blocking: true });
  subscriber.on('error', (error) => logger.warn({ err: error }, 'Redis subscriber error'));
  // Fails fast while Redis is down (no offline queue), so requests get 503 instead of waiting.
  const queueConnection = createRedis(config.redisUrl);
  queueConnection.on('error', (error) =>
    logger.warn({ err: error }, 'Redis queue connection error'),
  );
  await waitForRedis(queueConnection);
  const queues = createQueues(queueConnection, keys);
  queues.inference.on('error', (error) => logger.warn({ err: error }, 'queue error'));

  const dispatcher = new Dispatcher({
    // The queue's connection, so that an upload and its job go out together.
    redis: queueConnection,
    subscriber,
    queues,
    keys,
    logger,
    requestTimeoutMs: config.requestTimeoutMs,
    queueMaxWaiting: config.queueMaxWaiting,
  });
  await dispatcher.start();

  const rateLimiter =
    config.rateLimitPerSecond > 0
      ? new RateLimiter(redis, {
          ratePerSecond: config.rateLimitPerSecond,
          burst: config.rateLimitBurst,
          prefix: config.queuePrefix,
        })
      : null;
  const failedAuthLimiter =
    config.rateLimitPerSecond > 0
      ? new RateLimiter(redis, {
          ...FAILED_AUTH_LIMIT,
          prefix: `${config.queuePrefix}:unauthenticated`,
        })
      : null;
  const matchLogger =
    config.matchLogRetentionDays > 0
      ? new MatchLogger(db, logger, config.matchLogRetentionDays)
      : null;

  const registry = createRegistry('gateway');
  let draining = false;
  const app = createApp({
    config,
    db,
    redis,
    keys,
    dispatcher,
    logger,
    queues,
    registry,
    keyRing,
    rateLimiter,
    failedAuthLimiter,
    matchLogger,
    draining: () => draining,
  });
  const server: Server = createServer(
    {
      requestTimeout: config.httpRequestTimeoutMs,
      // Node checks the request deadlines this often. With its default of 30 s, a stalled upload
      // could keep its connection up to 30 s past HTTP_REQUEST_TIMEOUT_MS.
      connectionsCheckingInterval: Math.min(1000, config.httpRequestTimeoutMs),
    },
    app,
  );
  const errorsTotal = registry.getSingleMetric(`${METRIC_PREFIX}errors_total`) as
    | Counter<'code'>
    | undefined;
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) =>
    answerClientError(error, socket, config.httpRequestTimeoutMs, (code) =>
      errorsTotal?.inc({ code }),
    ),
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.keepAliveTimeout = 65_000;
  const streams = attachStreamServer(server, {
    dispatcher,
    logger,
    maxImageBytes: config.maxImageBytes,
    options: streamOptionsFromConfig(config),
    keyRing,
    rateLimiter,
    failedAuthLimiter,
    matchLogger,
    maxConnectionsPerKey: config.streamMaxConnectionsPerKey,
  });
  keyRing.on('revoked', (keyIds) => streams.closeStreamsOf(keyIds));
  keyRing.on('closed', () => streams.closeStreamsWithoutKey());
  const streamMetrics = new StreamMetrics(registry, () => streams.stats);
  streams.stats.on('frameLatency', (gatewayMs) =>
    streamMetrics.frameDuration.observe(gatewayMs / 1000),
  );
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  logger.info({ host: config.host, port }, 'gateway listening');

  /**
   * Rejects new requests (503, and the connection closes), gives the requests in progress
   * DRAIN_GRACE_MS to get their replies, fails the rest with 503 NOT_READY, and closes
   * every connection. Without it a request waited for its full deadline (504), and a
   * client's open connection kept the gateway running until the shutdown timed out.
   */
  async function drain(): Promise<void> {
    draining = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const deadline = Date.now() + DRAIN_GRACE_MS;
    while (dispatcher.inFlight > 0 && Date.now() < deadline) await delay(50);
    dispatcher.rejectAll('the gateway is shutting down; retry the request');
    // Lets the error responses go out before their connections close.
    await delay(100);
    server.closeAllConnections();
    await closed;
  }

  async function shutdown(signal: string): Promise<void> {
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ timeoutMs: SHUTDOWN_TIMEOUT_MS }, 'shutdown timed out');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    const steps: [string, () => Promise<unknown>][] = [
      // Upgraded sockets keep server.close() waiting, so the streams close first.
      ['close WebSocket streams', () => streams.close()],
      ['stop accepting connections and requests', () => drain()],
      ['stop following API keys', () => keyRing.stop()],
      [
        'stop the match log',
        () => {
          matchLogger?.stop();
          return Promise.resolve();
        },
      ],
      ['close queues', () => queues.close()],
      [
        'close Redis',
        () => Promise.allSettled([redis.quit(), subscriber.quit(), queueConnection.quit()]),
      ],
      ['close PostgreSQL', () => db.close()],
    ];
    for (const [name, step] of steps) {
      try {
        await step();
      } catch (error) {
        logger.error({ err: error, step: name }, 'shutdown step failed');
      }
    }
    dispatcher.rejectAll('the gateway is shutting down');
    logger.info('stopped');
  }
  signals.started(shutdown);
}

await main();
