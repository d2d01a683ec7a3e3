import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/** The repository root: the nearest folder above this file with pnpm-workspace.yaml. */
export function findRepoRoot(start = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const parent = dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
  return dir;
}

const repoRoot = findRepoRoot();

export interface VariableSpec<T> {
  /** Environment variable name. */
  env: string;
  /** What the value sets, with its unit. */
  description: string;
  /** Default as written in the environment; undefined means "unset". */
  defaultValue: string | undefined;
  /** How the default is shown in docs when it depends on the machine. */
  defaultLabel?: string;
  schema: z.ZodType<T>;
  /** The value may hold a password or key, so error messages leave it out. */
  secret?: boolean;
}

function variable<T>(
  env: string,
  description: string,
  defaultValue: string | undefined,
  schema: z.ZodType<T>,
  defaultLabel?: string,
): VariableSpec<T> {
  const spec: VariableSpec<T> = { env, description, defaultValue, schema };
  if (defaultLabel !== undefined) spec.defaultLabel = defaultLabel;
  return spec;
}

/** Marks a variable whose value must not appear in error messages. */
function secret<T>(spec: VariableSpec<T>): VariableSpec<T> {
  return { ...spec, secret: true };
}

/**
 * A number written in plain decimal, such as 8000, -0.5 or 4e2. Configuration and request
 * parameters accept only these: zod's coercion would also take '0x1f40' as 8000, '0b11' as 3
 * and ' ' as 0, and would refuse 'abc' with "received NaN".
 */
export const PLAIN_DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$/i;
/** A plain decimal number, with surrounding spaces allowed. */
const decimal = () =>
  z
    .string()
    .trim()
    .regex(PLAIN_DECIMAL, 'must be a plain decimal number')
    .transform((value) => Number(value));
const bounded = (min: number, max: number, whole: boolean) => {
  const schema = z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`);
  return whole ? schema.int('must be a whole number') : schema;
};
const integer = (min: number, max: number) => decimal().pipe(bounded(min, max, true));
const number = (min: number, max: number) => decimal().pipe(bounded(min, max, false));
/** Unset and empty mean undefined; anything else must be a number in range. */
const optionalNumber = (min: number, max: number) =>
  z.preprocess((value) => (value === '' ? undefined : value), number(min, max).optional());
const optionalInteger = (min: number, max: number) =>
  z.preprocess((value) => (value === '' ? undefined : value), integer(min, max).optional());
const path = () =>
  z
    .string()
    .min(1)
    .transform((value) => resolve(value));

const sharedModels = resolve(repoRoot, '..', 'shared', 'models');

/**
 * Every environment variable the service reads, with its unit and default.
 * The README's configuration table and .env.example list the same variables.
 */
export const variables = {
  modelsDir: variable(
    'MODELS_DIR',
    'Folder that holds the model files fetched by `npm run setup`.',
    join(repoRoot, 'models', 'files'),
    path(),
    '<repo>/models/files',
  ),
  modelsMirror: variable(
    'MODELS_MIRROR',
    'Local folder to copy model files from before trying their download URLs.',
    existsSync(sharedModels) ? sharedModels : undefined,
    z.string().optional(),
    '../shared/models when it exists',
  ),
  faceDetector: variable(
    'FACE_DETECTOR',
    'Detector model: yunet_2026may (dynamic input size) or yunet_2023mar (fixed 640x640).',
    'yunet_2026may',
    z.enum(['yunet_2026may', 'yunet_2023mar']),
  ),
  faceEmbedder: variable(
    'FACE_EMBEDDER',
    'Embedder model: mobilefacenet_int8 (MobileFaceNet quantized to int8 when loaded), mobilefacenet ' +
      '(the same file in float), sface or sface_int8 (the SFace files must be in MODELS_DIR or MODELS_MIRROR).',
    'mobilefacenet_int8',
    z.enum(['mobilefacenet', 'mobilefacenet_int8', 'sface', 'sface_int8']),
  ),
  detectorInputSize: variable(
    'DETECTOR_INPUT_SIZE',
    'Longest side, in pixels, that an image is scaled down to before detection (multiple of 32).',
    '640',
    integer(64, 4096).refine((value) => value % 32 === 0, 'must be a multiple of 32'),
  ),
  detectionMinScore: variable(
    'DETECTION_MIN_SCORE',
    'Detection score (0-1) below which a face candidate is dropped.',
    '0.7',
    number(0.05, 1),
  ),
  detectionNmsIou: variable(
    'DETECTION_NMS_IOU',
    'Intersection over union above which overlapping detections are merged (0-1).',
    '0.3',
    number(0.05, 1),
  ),
  detectionMaxFaces: variable(
    'DETECTION_MAX_FACES',
    "Maximum faces returned per image, highest scores first. A request's `limit` may lower it, not raise it.",
    '100',
    integer(1, 5000),
  ),
  minFaceSize: variable(
    'MIN_FACE_SIZE',
    'Shorter side, in pixels of the original image, below which a detected face is dropped.',
    '8',
    integer(0, 10000),
  ),
  maxImageBytes: variable(
    'MAX_IMAGE_BYTES',
    'Largest accepted encoded image, in bytes.',
    String(10 * 1024 * 1024),
    integer(1024, 1024 * 1024 * 1024),
  ),
  maxImagePixels: variable(
    'MAX_IMAGE_PIXELS',
    'Largest accepted image, in pixels (width times height), checked from the header before decoding.',
    String(40_000_000),
    integer(1, 1_000_000_000),
  ),
  onnxThreads: variable(
    'ONNX_THREADS',
    'Intra-op threads per ONNX Runtime session. Keep 1 when several workers share the cores.',
    '1',
    integer(1, 64),
  ),
  onnxIdleThreads: variable(
    'ONNX_IDLE_THREADS',
    'Intra-op threads per ONNX Runtime session for a job that starts while no other inference or batch job is active or waiting, so that a lone request uses more than one core. At or below ONNX_THREADS, this is off.',
    '2',
    integer(1, 64),
  ),
  verifyThreshold: variable(
    'VERIFY_THRESHOLD',
    "Cosine similarity at or above which two faces count as the same person (1:1); unset uses the embedder's calibrated default.",
    undefined,
    optionalNumber(-1, 1),
    'per model (see README)',
  ),
  databaseUrl: secret(
    variable(
      'DATABASE_URL',
      'PostgreSQL connection URL.',
      'postgres://postgres@127.0.0.1:5432/postgres',
      z.string().regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://'),
    ),
  ),
  databaseMigrationUrl: secret(
    variable(
      'DATABASE_MIGRATION_URL',
      "PostgreSQL URL of the schema owner: when set, processes migrate with it and grant DATABASE_URL's role the rights it needs, so that role cannot change the schema.",
      undefined,
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'must start with postgres:// or postgresql://')
        .optional(),
    ),
  ),
  databaseSchema: variable(
    'DATABASE_SCHEMA',
    'PostgreSQL schema that holds the tables (created by the migrations).',
    'facegate',
    z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]{0,62}$/,
        'must be a plain identifier: letters, digits, underscore',
      ),
  ),
  redisUrl: secret(
    variable(
      'REDIS_URL',
      'Redis connection URL (queues, image hand-off, replies, heartbeats).',
      'redis://127.0.0.1:6379',
      z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://'),
    ),
  ),
  queuePrefix: variable(
    'QUEUE_PREFIX',
    'Prefix of every Redis key and channel the service uses; deployments sharing one Redis need distinct prefixes.',
    'facegate',
    z.string().regex(/^[A-Za-z0-9_-]{1,40}$/, 'must be 1-40 letters, digits, _ or -'),
  ),
  host: variable('HOST', 'Address the gateway listens on.', '127.0.0.1', z.string().min(1)),
  port: variable(
    'PORT',
    'TCP port of the gateway (REST, WebSocket, /metrics).',
    '8000',
    integer(0, 65535),
  ),
  httpRequestTimeoutMs: variable(
    'HTTP_REQUEST_TIMEOUT_MS',
    'Milliseconds a client has to send a whole HTTP request (headers and body) before the gateway answers 408 and closes the connection, so that stalled uploads do not hold connections.',
    '30000',
    integer(1000, 600_000),
  ),
  requestTimeoutMs: variable(
    'REQUEST_TIMEOUT_MS',
    'Milliseconds the gateway waits for a result before answering 504 TIMEOUT.',
    '10000',
    integer(100, 600_000),
  ),
  queueMaxWaiting: variable(
    'QUEUE_MAX_WAITING',
    'Waiting inference jobs above which the gateway answers 503 QUEUE_FULL with Retry-After.',
    '256',
    integer(1, 1_000_000),
  ),
  inferenceWorkers: variable(
    'INFERENCE_WORKERS',
    'Inference worker processes that `npm start` launches on this machine. One process with a thread per core answered a lone request 2 ms sooner than two processes with one thread each, at the same throughput.',
    '1',
    integer(1, 64),
  ),
  inferenceThreads: variable(
    'INFERENCE_THREADS',
    'Worker threads (each with its own ONNX sessions) per inference worker process.',
    String(availableParallelism()),
    integer(1, 64),
    'number of cores',
  ),
  inferenceConcurrency: variable(
    'INFERENCE_CONCURRENCY',
    'Jobs one inference worker process takes from the queue at once; extra jobs wait in its thread pool.',
    undefined,
    optionalInteger(1, 256),
    '2 x INFERENCE_THREADS',
  ),
  matcherConcurrency: variable(
    'MATCHER_CONCURRENCY',
    'Match requests the matcher handles at once (searches are synchronous; this overlaps database look-ups).',
    '8',
    integer(1, 256),
  ),
  indexDir: variable(
    'INDEX_DIR',
    'Folder where the matcher persists its HNSW index; one per matcher and schema (an index saved from another schema is rebuilt, not used).',
    join(repoRoot, 'var', 'index'),
    path(),
    '<repo>/var/index',
  ),
  hnswM: variable(
    'HNSW_M',
    'HNSW graph degree M (32 reached 99.5% recall@1 at ef 200 with 100,000 faces; 16 only 95.4%).',
    '32',
    integer(4, 128),
  ),
  hnswEfConstruction: variable(
    'HNSW_EF_CONSTRUCTION',
    'HNSW efConstruction (build breadth).',
    '200',
    integer(10, 2000),
  ),
  hnswEf: variable(
    'HNSW_EF',
    'HNSW ef (search breadth); higher is slower and closer to exact search.',
    '200',
    integer(1, 5000),
  ),
  hnswInitialCapacity: variable(
    'HNSW_INITIAL_CAPACITY',
    'Faces the index has room for at start; it doubles before it is full.',
    '1024',
    integer(16, 100_000_000),
  ),
  exactSearchMaxFaces: variable(
    'EXACT_SEARCH_MAX_FACES',
    'Galleries with at most this many faces are searched exactly instead of through HNSW (about 1 ms per query at 8,000 faces).',
    '8000',
    integer(0, 10_000_000),
  ),
  identifyThreshold: variable(
    'IDENTIFY_THRESHOLD',
    "Cosine similarity at or above which a face is identified as a visitor (1:N); unset uses the embedder's calibrated default for IDENTIFY_SCORING.",
    undefined,
    optionalNumber(-1, 1),
    'per model (see README)',
  ),
  identifyScoring: variable(
    'IDENTIFY_SCORING',
    "How a visitor with several faces is scored in 1:N search: 'fused' compares the probe with the normalised mean of their faces, 'best' with their most similar face. Fused accepted fewer strangers at a higher identification rate on LFW.",
    'fused',
    z.enum(['fused', 'best']),
  ),
  enrolMinFaceSize: variable(
    'ENROL_MIN_FACE_SIZE',
    'Shorter side of the face box, in pixels, below which enrolment answers 422 FACE_TOO_SMALL.',
    '32',
    integer(0, 10000),
  ),
  indexPersistDelayMs: variable(
    'INDEX_PERSIST_DELAY_MS',
    'Milliseconds the matcher waits after a change before persisting the index (changes in between are saved together).',
    '5000',
    integer(0, 3_600_000),
  ),
  feedPollIntervalMs: variable(
    'FEED_POLL_INTERVAL_MS',
    'Milliseconds between polls of the change feed (notifications wake the matcher sooner).',
    '1000',
    integer(10, 600_000),
  ),
  heartbeatIntervalMs: variable(
    'HEARTBEAT_INTERVAL_MS',
    'Milliseconds between worker and matcher heartbeats in Redis; a process is considered gone after three missed ones.',
    '2000',
    integer(100, 60_000),
  ),
  metricsHost: variable(
    'METRICS_HOST',
    'Address the /metrics endpoint of an inference worker or matcher listens on (the gateway serves /metrics on its API port).',
    '127.0.0.1',
    z.string().min(1),
  ),
  metricsPort: variable(
    'METRICS_PORT',
    'TCP port of the /metrics endpoint of an inference worker or matcher; 0 turns it off. `npm start` gives the matcher 9464 and worker N 9464+N.',
    '9464',
    integer(0, 65535),
  ),
  streamMaxInFlight: variable(
    'STREAM_MAX_IN_FLIGHT',
    'Frames one WebSocket stream may have in the inference workers at once; newer frames replace the one waiting.',
    '1',
    integer(1, 64),
  ),
  streamMaxInFlightTotal: variable(
    'STREAM_MAX_IN_FLIGHT_TOTAL',
    'Frames all WebSocket streams of one gateway may have in the inference workers at once, shared round robin.',
    '8',
    integer(1, 4096),
  ),
  streamMaxBufferedBytes: variable(
    'STREAM_MAX_BUFFERED_BYTES',
    'Bytes waiting to be sent to one stream client above which its results are dropped.',
    String(1024 * 1024),
    integer(1024, 1024 * 1024 * 1024),
  ),
  streamSlowClientGraceMs: variable(
    'STREAM_SLOW_CLIENT_GRACE_MS',
    'Milliseconds a stream client may stay above STREAM_MAX_BUFFERED_BYTES before it is closed with code 1013.',
    '5000',
    integer(100, 600_000),
  ),
  streamHeartbeatIntervalMs: variable(
    'STREAM_HEARTBEAT_INTERVAL_MS',
    'Milliseconds between WebSocket pings; a client that misses one pong is disconnected.',
    '15000',
    integer(100, 600_000),
  ),
  streamMaxPayloadBytes: variable(
    'STREAM_MAX_PAYLOAD_BYTES',
    'Largest WebSocket message, in bytes; a larger one closes the stream with code 1009. Unset uses MAX_IMAGE_BYTES.',
    undefined,
    optionalNumber(1024, 1024 * 1024 * 1024),
    'MAX_IMAGE_BYTES',
  ),
  streamMaxConnections: variable(
    'STREAM_MAX_CONNECTIONS',
    'Open WebSocket streams per gateway above which new ones are rejected with 503 TOO_MANY_STREAMS.',
    '64',
    integer(1, 100_000),
  ),
  apiKeys: secret(
    variable(
      'API_KEYS',
      'API keys for simple deployments: `<key>:<scope>[+<scope>],...` with scopes recognize, enrol and admin; keys need 16+ characters. Keys from `fr keys create` are added to these.',
      undefined,
      z.string().optional(),
    ),
  ),
  authRequired: variable(
    'AUTH_REQUIRED',
    'With true, the gateway rejects every request while no API key exists, instead of running open.',
    'false',
    z.enum(['true', 'false']).transform((value) => value === 'true'),
  ),
  rateLimitPerSecond: variable(
    'RATE_LIMIT_PER_SECOND',
    'Sustained requests per second per API key, shared by all gateways through Redis; 0 turns the limit off (a gateway without keys has no limit).',
    '100',
    number(0, 1_000_000),
  ),
  rateLimitBurst: variable(
    'RATE_LIMIT_BURST',
    'Requests one API key may send at once above the sustained rate.',
    '200',
    integer(1, 1_000_000),
  ),
  streamMaxConnectionsPerKey: variable(
    'STREAM_MAX_CONNECTIONS_PER_KEY',
    'Open WebSocket streams per API key on one gateway above which new ones are rejected with 429.',
    '16',
    integer(1, 100_000),
  ),
  maxCandidates: variable(
    'MAX_CANDIDATES',
    'Largest top_k: candidate visitors returned per recognized face.',
    '20',
    integer(1, 100),
  ),
  batchMaxItems: variable(
    'BATCH_MAX_ITEMS',
    'Images one batch may contain; a larger source fails at planning with BATCH_TOO_LARGE.',
    '1000000',
    integer(1, 100_000_000),
  ),
  batchSourceRoots: variable(
    'BATCH_SOURCE_ROOTS',
    'Comma-separated absolute folders that batch sources (directories, manifests, image paths in tables) must lie in; unset allows any path the inference workers can read.',
    undefined,
    z
      .string()
      .optional()
      .transform((value) =>
        (value ?? '')
          .split(',')
          .map((root) => root.trim())
          .filter((root) => root !== ''),
      )
      .refine(
        (roots) => roots.every((root) => root.startsWith('/')),
        'every folder must be an absolute path',
      )
      .transform((roots) => roots.map((root) => resolve(root))),
    'any path',
  ),
  matchLogRetentionDays: variable(
    'MATCH_LOG_RETENTION_DAYS',
    'Days recognition results are kept in match_log; 0 stores none.',
    '0',
    integer(0, 3650),
  ),
  erasureTimeoutMs: variable(
    'ERASURE_TIMEOUT_MS',
    'Milliseconds a visitor or face deletion waits for every running matcher to drop the faces from its index and its saved file.',
    '10000',
    integer(100, 600_000),
  ),
  logLevel: variable(
    'LOG_LEVEL',
    'pino log level: fatal, error, warn, info, debug, trace or silent.',
    'info',
    z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  ),
} as const;

export type Variables = typeof variables;
export type Config = { [K in keyof Variables]: z.output<Variables[K]['schema']> };
