import { type Server, createServer } from 'node:http';

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics of one process. Every name starts with `facegate_`; each
 * process registers only the collectors of its concerns, and serves them on
 * /metrics (the gateway on its API port, the others on METRICS_PORT).
 */
export const METRIC_PREFIX = 'facegate_';

/** Buckets in seconds that resolve 1 ms to 200 ms, with a tail for slow outliers. */
export const STAGE_BUCKETS_SECONDS = [
  0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
  0.5, 1, 2, 5,
];

export type Stage = 'decode' | 'detect' | 'align' | 'embed' | 'queue_wait' | 'match' | 'end_to_end';

/**
 * Interval of the event loop delay sampling behind the `eventloop_lag` metrics. With
 * prom-client's default of 10 ms, each idle app woke 100 times a second.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({
    register: registry,
    prefix: METRIC_PREFIX,
    eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
  });
  return registry;
}

export class StageMetrics {
  readonly duration: Histogram<'stage'>;

  constructor(registry: Registry) {
    this.duration = new Histogram({
      name: `${METRIC_PREFIX}stage_duration_seconds`,
      help: 'Time spent per pipeline stage of one request or frame: decode, detect, align, embed, queue_wait, match, end_to_end.',
      labelNames: ['stage'],
      buckets: STAGE_BUCKETS_SECONDS,
      registers: [registry],
    });
  }

  /** Records stage timings given in milliseconds (`decodeMs` -> stage "decode"). */
  observeTimings(timings: Record<string, number | undefined>): void {
    for (const [key, value] of Object.entries(timings)) {
      const stage = STAGE_KEYS[key];
      if (stage && value !== undefined && Number.isFinite(value))
        this.duration.observe({ stage }, value / 1000);
    }
  }
}

const STAGE_KEYS: Record<string, Stage> = {
  decodeMs: 'decode',
  detectMs: 'detect',
  alignMs: 'align',
  embedMs: 'embed',
  queueWaitMs: 'queue_wait',
  matchMs: 'match',
};

export class JobMetrics {
  readonly jobs: Counter<'queue' | 'outcome'>;

  constructor(registry: Registry) {
    this.jobs = new Counter({
      name: `${METRIC_PREFIX}jobs_total`,
      help:
        'Jobs finished by this process, by queue and outcome: completed, failed, retried, stalled, ' +
        'expired (skipped because the gateway had stopped waiting for them).',
      labelNames: ['queue', 'outcome'],
      registers: [registry],
    });
  }
}

export class QueueDepthMetrics {
  readonly depth: Gauge<'queue' | 'state'>;

  /** `read` is called at each scrape and returns job counts per queue and state. */
  constructor(registry: Registry, read: () => Promise<Record<string, Record<string, number>>>) {
    this.depth = new Gauge({
      name: `${METRIC_PREFIX}queue_jobs`,
      help: 'Jobs in each queue by state (waiting, paused, active, delayed, failed), read at scrape time.',
      labelNames: ['queue', 'state'],
      registers: [registry],
      collect: async () => {
        const counts = await read().catch(() => ({}) as Record<string, Record<string, number>>);
        for (const [queue, states] of Object.entries(counts)) {
          for (const [state, count] of Object.entries(states))
            this.depth.set({ queue, state }, count);
        }
      },
    });
  }
}

export class ModelInfoMetric {
  readonly info: Gauge<'role' | 'model_id' | 'sha256'>;

  constructor(registry: Registry) {
    this.info = new Gauge({
      name: `${METRIC_PREFIX}model_info`,
      help: 'Loaded model files (value 1), labelled with role, model id and sha256.',
      labelNames: ['role', 'model_id', 'sha256'],
      registers: [registry],
    });
  }

  set(models: readonly { role: string; id: string; sha256: string }[]): void {
    for (const model of models)
      this.info.set({ role: model.role, model_id: model.id, sha256: model.sha256 }, 1);
  }
}

export interface IndexSnapshot {
  size: number;
  capacity: number;
  deletedCount: number;
  lastPersistedAt: string | null;
  rebuildDurationMs?: number | null;
}

export class IndexMetrics {
  constructor(registry: Registry, read: () => IndexSnapshot | undefined) {
    const gauge = (
      name: string,
      help: string,
      pick: (snapshot: IndexSnapshot) => number | null | undefined,
    ): void => {
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        registers: [registry],
        collect() {
          const snapshot = read();
          const value = snapshot ? pick(snapshot) : undefined;
          if (value !== undefined && value !== null && Number.isFinite(value)) this.set(value);
        },
      });
    };
    gauge('index_faces', 'Live faces in the HNSW index.', (s) => s.size);
    gauge(
      'index_capacity',
      'Faces the HNSW index has room for before it grows.',
      (s) => s.capacity,
    );
    gauge('index_deleted_faces', 'Faces marked deleted in the HNSW index.', (s) => s.deletedCount);
    gauge('index_last_persist_timestamp_seconds', 'Unix time of the last index save.', (s) =>
      s.lastPersistedAt ? Date.parse(s.lastPersistedAt) / 1000 : null,
    );
    gauge('index_rebuild_duration_seconds', 'Duration of the last index load or rebuild.', (s) =>
      s.rebuildDurationMs === undefined || s.rebuildDurationMs === null
        ? null
        : s.rebuildDurationMs / 1000,
    );
  }
}

export class HttpMetrics {
  readonly requests: Counter<'method' | 'route' | 'status'>;
  readonly duration: Histogram<'method' | 'route'>;
  readonly errors: Counter<'code'>;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: `${METRIC_PREFIX}http_requests_total`,
      help: 'HTTP responses sent, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: `${METRIC_PREFIX}http_request_duration_seconds`,
      help: 'HTTP request latency from arrival to the end of the response, by method and route pattern.',
      labelNames: ['method', 'route'],
      buckets: STAGE_BUCKETS_SECONDS,
      registers: [registry],
    });
    this.errors = new Counter({
      name: `${METRIC_PREFIX}errors_total`,
      help: 'Error responses by stable error code.',
      labelNames: ['code'],
      registers: [registry],
    });
  }
}

export interface StreamCounts {
  connections: number;
  framesReceived: number;
  framesProcessed: number;
  framesDropped: number;
}

export class StreamMetrics {
  readonly connections: Gauge;
  readonly frames: Counter<'outcome'>;
  readonly frameDuration: Histogram;

  /** `read` returns the stream endpoint's running totals; counters advance by the difference at each scrape. */
  constructor(registry: Registry, read: () => StreamCounts) {
    const last = { received: 0, processed: 0, dropped: 0 };
    this.connections = new Gauge({
      name: `${METRIC_PREFIX}stream_connections`,
      help: 'Open WebSocket camera streams.',
      registers: [registry],
      collect() {
        this.set(read().connections);
      },
    });
    this.frames = new Counter({
      name: `${METRIC_PREFIX}stream_frames_total`,
      help: 'WebSocket frames by outcome: received, processed (a result was sent), dropped (replaced by a newer frame or discarded for a slow client).',
      labelNames: ['outcome'],
      registers: [registry],
      collect() {
        const counts = read();
        const now = {
          received: counts.framesReceived,
          processed: counts.framesProcessed,
          dropped: counts.framesDropped,
        };
        for (const outcome of ['received', 'processed', 'dropped'] as const) {
          const delta = now[outcome] - last[outcome];
          if (delta > 0) this.inc({ outcome }, delta);
          last[outcome] = now[outcome];
        }
      },
    });
    this.frameDuration = new Histogram({
      name: `${METRIC_PREFIX}stream_frame_duration_seconds`,
      help: 'Latency of one WebSocket frame from arrival to its result being sent.',
      buckets: STAGE_BUCKETS_SECONDS,
      registers: [registry],
    });
  }
}

/** Serves `registry` on http://host:port/metrics; resolves undefined when port is 0. */
export async function serveMetrics(
  registry: Registry,
  host: string,
  port: number,
): Promise<Server | undefined> {
  if (port === 0) return undefined;
  const server = createServer((request, response) => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => response.writeHead(500).end(String(error)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
