import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import type { KeyRing, RateLimiter } from '@facegate/auth';
import type { Config } from '@facegate/config';
import {
  type Heartbeat,
  type KeyNames,
  type RecognizeResult,
  readHeartbeats,
  readMatchCounts,
} from '@facegate/contracts';
import {
  type Database,
  type Visitor,
  createVisitor,
  eraseFace,
  eraseVisitor,
  getVisitor,
  listFaces,
  listVisitors,
  ping,
  recordAudit,
  renameBatchItemsExternalId,
  transaction,
  updateVisitor,
} from '@facegate/db';
import { FaceGateError, serializeError } from '@facegate/errors';
import type { Logger } from '@facegate/logger';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Redis } from 'ioredis';
import { HttpMetrics, QueueDepthMetrics, StageMetrics } from '@facegate/metrics';
import type { Registry } from 'prom-client';
import type { Queues } from '@facegate/contracts';

import { accessControl, actorOf } from './access.js';
import { registerBatchRoutes } from './batches.js';
import type { Dispatcher } from './dispatcher.js';
import { readImages, readJson } from './images.js';
import { registerKeyRoutes } from './keys.js';
import type { MatchLogger } from './match-log.js';
import { ROUTES, buildOpenApi } from './openapi.js';
import { waitForErasure } from './erasure.js';
import { swaggerUiRouter } from './docs.js';
import {
  noQuery,
  detectQuery,
  enrolQuery,
  faceIdParams,
  listVisitorsQuery,
  newVisitorBody,
  parse,
  recognizeQuery,
  verifyQuery,
  visitorIdParams,
  visitorPatchBody,
  withBodyParameters,
} from './schemas.js';

export interface GatewayDeps {
  config: Config;
  db: Database;
  redis: Redis;
  keys: KeyNames;
  dispatcher: Dispatcher;
  logger: Logger;
  queues: Queues;
  /** Registry served on /metrics; the gateway's collectors are added to it here. */
  registry: Registry;
  keyRing: KeyRing;
  /** Null when RATE_LIMIT_PER_SECOND is 0. */
  rateLimiter: RateLimiter | null;
  /** Limit of requests with a missing or invalid key per client address; null when off. */
  failedAuthLimiter?: RateLimiter | null;
  /** Null unless MATCH_LOG_RETENTION_DAYS is above 0. */
  matchLogger?: MatchLogger | null;
  /** True once the gateway is shutting down: every new request then gets 503 NOT_READY. */
  draining?: () => boolean;
}

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'] as const;

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** From X-Request-Id when valid, else a new UUID; carried into every job. */
      requestId: string;
    }
  }
}

const INFERENCE_ROUTES = new Set(['/api/v1/detect', '/api/v1/recognize', '/api/v1/verify']);

/** Largest change-feed sequence this gateway has written or seen; recognitions wait for the matcher to reach it. */
class SeqTracker {
  #seq = 0;
  get value(): number {
    return this.#seq;
  }
  observe(seq: number): void {
    if (seq > this.#seq) this.#seq = seq;
  }
}

function visitorJson(visitor: Visitor): Record<string, unknown> {
  return {
    id: visitor.id,
    externalId: visitor.externalId,
    name: visitor.name,
    metadata: visitor.metadata,
    createdAt: visitor.createdAt.toISOString(),
    updatedAt: visitor.updatedAt.toISOString(),
  };
}

/** Adds the gateway's own share (reading the upload, and the whole request) to a result's timings. */
function withGatewayTimings(result: unknown, uploadMs: number, totalMs: number): unknown {
  const withTimings = result as { timings?: Record<string, number> };
  if (withTimings.timings) {
    withTimings.timings.uploadMs = Math.round(uploadMs * 1000) / 1000;
    withTimings.timings.gatewayMs = Math.round(totalMs * 1000) / 1000;
  }
  return result;
}

/**
 * Sends `body` as JSON like response.json, without the ETag that Express computes by hashing
 * every body. Express checks an ETag only for successful GET and HEAD requests, so for POST
 * results and errors the hash is wasted.
 */
function sendJson(response: Response, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  response.statusCode = status;
  response.setHeader('Content-Type', 'application/json; charset=utf-8');
  response.setHeader('Content-Length', Buffer.byteLength(text));
  response.end(text);
}

function notFound(what: string): FaceGateError {
  return new FaceGateError('NOT_FOUND', `${what} does not exist`);
}

async function checkReadiness(
  deps: GatewayDeps,
): Promise<{ ready: boolean; checks: Record<string, unknown> }> {
  const checks: Record<string, unknown> = {};
  const timeout = <T>(promise: Promise<T>, ms: number): Promise<T> =>
    Promise.race([
      promise,
      new Promise<T>((_, reject) =>
        setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref(),
      ),
    ]);

  const [postgres, redis] = await Promise.allSettled([
    timeout(ping(deps.db, 1000), 1500),
    timeout(deps.redis.ping(), 1000),
  ]);
  checks.postgres =
    postgres.status === 'fulfilled' ? { ok: true } : { ok: false, error: String(postgres.reason) };
  checks.redis =
    redis.status === 'fulfilled' ? { ok: true } : { ok: false, error: String(redis.reason) };

  let workers: Heartbeat[] = [];
  let matchers: Heartbeat[] = [];
  if (redis.status === 'fulfilled') {
    [workers, matchers] = await Promise.all([
      readHeartbeats(deps.redis, deps.keys, 'worker'),
      readHeartbeats(deps.redis, deps.keys, 'matcher'),
    ]).catch(() => [[], []] as Heartbeat[][]);
  }
  const readyWorkers = workers.filter((worker) => worker.ready);
  checks.inferenceWorkers = {
    ok: readyWorkers.length > 0,
    ready: readyWorkers.length,
    models: [...new Set(readyWorkers.map((worker) => String(worker.detail.modelId)))],
  };
  const readyMatchers = matchers.filter((matcher) => matcher.ready);
  checks.matcher = {
    ok: readyMatchers.length > 0,
    ready: readyMatchers.length,
    states: matchers.map((matcher) => ({
      id: matcher.id,
      state: matcher.detail.state,
      reason: matcher.detail.reason,
    })),
  };
  const mode = deps.keyRing.mode;
  const noKeys = mode === 'keys' && deps.keyRing.keyIds.length === 0;
  checks.auth = {
    ok: !noKeys,
    mode,
    ...(mode === 'open' && {
      warning: 'no API keys are configured: every client can enrol, read and recognize visitors',
    }),
    ...(noKeys && { error: 'AUTH_REQUIRED is set or every key is revoked, but no key is active' }),
  };
  const ready = Object.values(checks).every((check) => (check as { ok: boolean }).ok);
  return { ready, checks };
}

/** Documented routes as path patterns, to tell a wrong method (405) from an unknown path. */
const ROUTE_PATTERNS = ROUTES.map((route) => ({
  method: route.method.toUpperCase(),
  pattern: new RegExp(`^${route.path.replace(/\{\w+\}/g, '[^/]+')}/?$`),
}));

/** Returns the methods the documented routes take on `path`; none for an unknown path. */
function allowedMethods(path: string): string[] {
  const methods = ROUTE_PATTERNS.filter(({ pattern }) => pattern.test(path)).map(
    ({ method }) => method,
  );
  return [...new Set(methods)];
}

/**
 * Returns the error as a FaceGateError when Express's router raised it for the client's
 * request: a path parameter with invalid percent-encoding (`/visitors/%zz`) is a URIError
 * with status 400. Other errors are returned unchanged.
 */
function fromRouter(error: unknown): unknown {
  if (error instanceof URIError && (error as { status?: unknown }).status === 400) {
    return new FaceGateError(
      'INVALID_REQUEST',
      `the path is invalid: ${error.message.replace('Failed to decode param', 'cannot decode')}`,
    );
  }
  return error;
}

/** Tells whether an error means that the client closed its connection mid-request. */
function clientWentAway(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return code === 'ECONNRESET' || code === 'ECONNABORTED' || message === 'aborted';
}

export function createApp(deps: GatewayDeps): express.Express {
  const { config, db, dispatcher, logger } = deps;
  const seq = new SeqTracker();
  const guard = accessControl({
    keyRing: deps.keyRing,
    rateLimiter: deps.rateLimiter,
    failedAuthLimiter: deps.failedAuthLimiter ?? null,
    logger,
  });
  const limits = { maxImageBytes: config.maxImageBytes };
  /**
   * Ends a deletion: 204 once every running matcher has dropped the faces from memory and
   * from its saved index, else 202 naming the matchers that have not confirmed yet.
   */
  async function answerErasure(response: Response, erasureSeq: number, what: string) {
    if (erasureSeq === 0) {
      response.status(204).end();
      return;
    }
    let status;
    try {
      status = await waitForErasure(deps.redis, deps.keys, erasureSeq, config.erasureTimeoutMs);
    } catch (error) {
      // The database part is committed; only the matchers' confirmation is unknown.
      logger.warn({ err: error, what, seq: erasureSeq }, 'erasure confirmation failed');
      response.status(202).json({
        status: 'pending',
        message: `${what} is deleted from the database, but the matchers' confirmation could not be read from Redis; they erase it when they apply the change`,
        seq: erasureSeq,
        confirmed: [],
        pending: [],
      });
      return;
    }
    if (status.complete) {
      response.status(204).end();
      return;
    }
    logger.warn(
      { what, seq: erasureSeq, pending: status.pending },
      'erasure not confirmed by every matcher',
    );
    response.status(202).json({
      status: 'pending',
      message:
        status.pending.length === 0
          ? `${what} is deleted from the database, but no matcher is running to confirm that its index no longer holds it; a matcher erases it from its saved index when it starts`
          : `${what} is deleted from the database; matchers ${status.pending.join(', ')} have not confirmed within ${config.erasureTimeoutMs} ms that their indexes no longer hold it, and erase it when they catch up`,
      seq: erasureSeq,
      confirmed: status.confirmed,
      pending: status.pending,
    });
  }

  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  const http = new HttpMetrics(deps.registry);
  const stages = new StageMetrics(deps.registry);
  new QueueDepthMetrics(deps.registry, async () => {
    const [inference, match] = await Promise.all([
      deps.queues.inference.getJobCounts(...QUEUE_STATES),
      readMatchCounts(deps.redis, deps.keys),
    ]);
    return { inference, match };
  });

  // Counted when the response ends, by route pattern (not the raw path, which contains ids).
  app.use((request, response, next) => {
    const started = process.hrtime.bigint();
    response.on('finish', () => {
      const route = request.route
        ? `${request.baseUrl}${String((request.route as { path: string }).path)}`
        : 'unmatched';
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      http.requests.inc({ method: request.method, route, status: String(response.statusCode) });
      http.duration.observe({ method: request.method, route }, seconds);
      if (INFERENCE_ROUTES.has(route) && response.statusCode < 400)
        stages.duration.observe({ stage: 'end_to_end' }, seconds);
      logger.debug(
        {
          requestId: request.requestId,
          keyId: request.principal?.keyId,
          method: request.method,
          route,
          status: response.statusCode,
          durationMs: Math.round(seconds * 1000),
        },
        'request answered',
      );
    });
    next();
  });

  app.use((request, response, next) => {
    const header = request.headers['x-request-id'];
    const requestId =
      typeof header === 'string' && /^[\w.:-]{1,128}$/.test(header) ? header : randomUUID();
    request.requestId = requestId;
    response.setHeader('X-Request-Id', requestId);
    next();
  });

  // A client that keeps its connection open would otherwise queue work for workers that are
  // stopping, and wait for a reply that never comes.
  app.use((_request, response, next) => {
    if (!deps.draining?.()) {
      next();
      return;
    }
    response.setHeader('Connection', 'close');
    next(new FaceGateError('NOT_READY', 'the gateway is shutting down; retry the request'));
  });

  app.get('/metrics', async (_request, response) => {
    response.setHeader('content-type', deps.registry.contentType);
    response.send(await deps.registry.metrics());
  });

  const openapi = buildOpenApi('0.1.0');
  app.get('/openapi.json', (_request, response) => {
    response.json(openapi);
  });
  app.use('/docs', swaggerUiRouter('/openapi.json'));

  app.get('/health', (_request, response) => {
    response.json({ status: 'ok' });
  });

  app.get('/ready', async (_request, response) => {
    const { ready, checks } = await checkReadiness(deps);
    response.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'not ready',
      auth: deps.keyRing.mode,
      checks,
    });
  });

  app.post('/api/v1/detect', guard('recognize'), async (request, response) => {
    const queryOnly = parse(detectQuery, request.query, 'query');
    const { images, fields } = await readImages(request, ['image'], [], limits);
    const query = withBodyParameters(detectQuery, queryOnly, request.query, fields);
    const result = await dispatcher.request('detect', request.requestId, [images.get('image')!], {
      params: { minScore: query.min_score, maxFaces: query.limit },
    });
    sendJson(response, result);
  });

  app.post('/api/v1/recognize', guard('recognize'), async (request, response) => {
    const queryOnly = parse(recognizeQuery, request.query, 'query');
    const arrived = performance.now();
    const { images, fields } = await readImages(request, ['image'], [], limits);
    const uploadMs = performance.now() - arrived;
    const query = withBodyParameters(recognizeQuery, queryOnly, request.query, fields);
    if (query.top_k > config.maxCandidates) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `'top_k' is ${query.top_k}; the limit is ${config.maxCandidates} (MAX_CANDIDATES)`,
      );
    }
    const result = await dispatcher.request(
      'recognize',
      request.requestId,
      [images.get('image')!],
      {
        params: { minScore: query.min_score, maxFaces: query.limit },
        match: { topK: query.top_k, threshold: query.threshold, minSeq: seq.value },
      },
    );
    deps.matchLogger?.record(actorOf(request), result as RecognizeResult);
    sendJson(response, withGatewayTimings(result, uploadMs, performance.now() - arrived));
  });

  app.post('/api/v1/verify', guard('recognize'), async (request, response) => {
    const queryOnly = parse(verifyQuery, request.query, 'query');
    const { images, fields } = await readImages(
      request,
      [],
      ['image', 'image_a', 'image_b'],
      limits,
    );
    const { visitor_id: visitorId, threshold } = withBodyParameters(
      verifyQuery,
      queryOnly,
      request.query,
      fields,
    );

    // Exactly one of the two forms: an image that the request does not compare must not be
    // dropped silently, since the result would then be about other images than the client's.
    let blobs: Uint8Array[];
    const image = images.get('image');
    const imageA = images.get('image_a');
    const imageB = images.get('image_b');
    if (visitorId) {
      if (!image || imageA || imageB)
        throw new FaceGateError(
          'INVALID_REQUEST',
          "with visitor_id, send exactly one image, in field 'image' (not image_a or image_b)",
        );
      blobs = [image];
    } else {
      if (!imageA || !imageB || image)
        throw new FaceGateError(
          'INVALID_REQUEST',
          image
            ? "field 'image' is compared with a visitor: add visitor_id, or send image_a and image_b"
            : "send 'image_a' and 'image_b', or 'image' and visitor_id",
        );
      blobs = [imageA, imageB];
    }
    const result = await dispatcher.request('verify', request.requestId, blobs, {
      visitorId,
      threshold,
    });
    sendJson(response, result);
  });

  app.post('/api/v1/visitors', guard('enrol'), noQuery, async (request, response) => {
    const body = parse(newVisitorBody, await readJson(request), 'body');
    const visitor = await transaction(db, async (tx) => {
      const created = await createVisitor(tx, body);
      await recordAudit(tx, actorOf(request), {
        action: 'visitor.create',
        targetType: 'visitor',
        targetId: created.id,
      });
      return created;
    });
    response.status(201).json(visitorJson(visitor));
  });

  app.get('/api/v1/visitors', guard('enrol'), async (request, response) => {
    const query = parse(listVisitorsQuery, request.query, 'query');
    const page = await listVisitors(db, query);
    response.json({
      items: page.items.map(visitorJson),
      total: page.total,
      nextCursor: page.nextCursor ?? null,
    });
  });

  app.get('/api/v1/visitors/:id', guard('enrol'), noQuery, async (request, response) => {
    const { id } = parse(visitorIdParams, request.params, 'path');
    const visitor = await getVisitor(db, id);
    if (!visitor) throw notFound(`visitor ${id}`);
    response.json(visitorJson(visitor));
  });

  app.patch('/api/v1/visitors/:id', guard('enrol'), noQuery, async (request, response) => {
    const { id } = parse(visitorIdParams, request.params, 'path');
    const patch = parse(visitorPatchBody, await readJson(request), 'body');
    const visitor = await transaction(db, async (tx) => {
      const before = patch.externalId === undefined ? null : await getVisitor(tx, id);
      const updated = await updateVisitor(tx, id, patch);
      if (updated && before?.externalId && before.externalId !== updated.externalId) {
        // Batch items name the visitor by external id; they follow the change so that an
        // erasure still finds them.
        await renameBatchItemsExternalId(tx, before.externalId, updated.externalId);
      }
      if (updated) {
        await recordAudit(tx, actorOf(request), {
          action: 'visitor.update',
          targetType: 'visitor',
          targetId: id,
          details: { fields: Object.keys(patch) },
        });
      }
      return updated;
    });
    if (!visitor) throw notFound(`visitor ${id}`);
    response.json(visitorJson(visitor));
  });

  app.delete('/api/v1/visitors/:id', guard('enrol'), noQuery, async (request, response) => {
    const { id } = parse(visitorIdParams, request.params, 'path');
    const erasure = await eraseVisitor(db, id, actorOf(request));
    if (!erasure) throw notFound(`visitor ${id}`);
    seq.observe(erasure.seq);
    await answerErasure(response, erasure.seq, `visitor ${id}`);
  });

  app.post('/api/v1/visitors/:id/faces', guard('enrol'), async (request, response) => {
    const { id } = parse(visitorIdParams, request.params, 'path');
    const queryOnly = parse(enrolQuery, request.query, 'query');
    const { images, fields } = await readImages(request, ['image'], [], limits);
    const query = withBodyParameters(enrolQuery, queryOnly, request.query, fields);
    if (!(await getVisitor(db, id))) throw notFound(`visitor ${id}`);
    const result = (await dispatcher.request('enrol', request.requestId, [images.get('image')!], {
      visitorId: id,
      multipleFaces: query.multiple_faces,
      keyId: request.principal?.keyId ?? null,
    })) as { created: boolean; seq: number };
    seq.observe(result.seq);
    response.status(result.created ? 201 : 200).json(result);
  });

  app.get('/api/v1/visitors/:id/faces', guard('enrol'), noQuery, async (request, response) => {
    const { id } = parse(visitorIdParams, request.params, 'path');
    if (!(await getVisitor(db, id))) throw notFound(`visitor ${id}`);
    const faces = await listFaces(db, id);
    response.json({
      items: faces.map((face) => ({
        id: face.id,
        visitorId: face.visitorId,
        modelId: face.modelId,
        dim: face.dim,
        detectionScore: face.detectionScore,
        box: face.box,
        faceSize: face.faceSize,
        imageSha256: face.imageSha256.toString('hex'),
        createdAt: face.createdAt.toISOString(),
      })),
    });
  });

  app.delete(
    '/api/v1/visitors/:id/faces/:faceId',
    guard('enrol'),
    noQuery,
    async (request, response) => {
      const { id, faceId } = parse(faceIdParams, request.params, 'path');
      const erasure = await eraseFace(db, id, faceId, actorOf(request));
      if (!erasure) throw notFound(`face ${faceId} of visitor ${id}`);
      seq.observe(erasure.seq);
      await answerErasure(response, erasure.seq, `face ${faceId}`);
    },
  );

  app.get('/api/v1/index', guard('admin'), noQuery, async (_request, response) => {
    const matchers = await readHeartbeats(deps.redis, deps.keys, 'matcher');
    if (matchers.length === 0)
      throw new FaceGateError('NOT_READY', 'no matcher is running (no heartbeat in Redis)');
    const [first] = matchers;
    const detail = first!.detail as {
      index?: Record<string, unknown>;
      rebuild?: unknown;
      state?: string;
      scoring?: string;
      identifyThreshold?: number;
    };
    response.json({
      ...detail.index,
      scoring: detail.scoring,
      identifyThreshold: detail.identifyThreshold,
      state: detail.state,
      rebuild: detail.rebuild,
      replicas: matchers.length,
    });
  });

  registerBatchRoutes(app, deps, guard);
  registerKeyRoutes(app, deps, guard);

  app.use((request, response, next) => {
    const allowed = allowedMethods(request.path);
    if (allowed.length === 0) {
      next(new FaceGateError('NOT_FOUND', `no route for ${request.method} ${request.path}`));
      return;
    }
    response.set('Allow', allowed.join(', '));
    next(
      new FaceGateError(
        'METHOD_NOT_ALLOWED',
        `${request.path} does not take ${request.method}; it takes ${allowed.join(', ')}`,
        { details: { allowed } },
      ),
    );
  });

  app.use((error: unknown, request: Request, response: Response, _next: NextFunction) => {
    const known = fromRouter(error);
    const serialized = serializeError(known);
    if (clientWentAway(error)) {
      logger.info(
        { requestId: request.requestId, reason: String(error) },
        'client closed the connection',
      );
      return;
    }
    http.errors.inc({ code: serialized.code });
    if (serialized.code === 'INTERNAL') {
      logger.error({ err: error, requestId: request.requestId }, 'request failed');
      // An unexpected exception's message names internals; the log has it.
      if (!(known instanceof FaceGateError))
        serialized.message = `internal error; the gateway's log has it under request id ${request.requestId}`;
    } else if (serialized.status >= 500) {
      logger.warn(
        { requestId: request.requestId, code: serialized.code, message: serialized.message },
        'request failed',
      );
    }
    if (serialized.code === 'QUEUE_FULL' || serialized.status === 503)
      response.setHeader('Retry-After', '1');
    if (!response.headersSent) {
      sendJson(
        response,
        {
          error: {
            code: serialized.code,
            message: serialized.message,
            details: serialized.details,
          },
        },
        serialized.status,
      );
    }
  });

  return app;
}
