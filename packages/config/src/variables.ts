import { existsSync } from 'node:fs';
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

const integer = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const number = (min: number, max: number) => z.coerce.number().min(min).max(max);
const optionalNumber = (min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((value) => (value === undefined || value === '' ? undefined : Number(value)))
    .pipe(z.number().min(min).max(max).optional());
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
    'Embedder model: mobilefacenet, sface or sface_int8 (the SFace files must be in MODELS_DIR or MODELS_MIRROR).',
    'mobilefacenet',
    z.enum(['mobilefacenet', 'sface', 'sface_int8']),
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
    'Maximum faces returned per image, highest scores first.',
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
  verifyThreshold: variable(
    'VERIFY_THRESHOLD',
    "Cosine similarity at or above which two faces count as the same person (1:1); unset uses the embedder's calibrated default.",
    undefined,
    optionalNumber(-1, 1),
    'per model (see README)',
  ),
} as const;

export type Variables = typeof variables;
export type Config = { [K in keyof Variables]: z.output<Variables[K]['schema']> };
