import { z } from 'zod';

/** Response bodies, used to generate the OpenAPI document (and checked against live answers in tests). */
const box = z.object({ x: z.number(), y: z.number(), width: z.number(), height: z.number() });
const point = z.tuple([z.number(), z.number()]);
const imageSize = z.object({ width: z.number().int(), height: z.number().int() });
const timings = z
  .record(z.string(), z.number())
  .describe('Milliseconds per stage (decodeMs, detectMs, alignMs, embedMs, queueWaitMs, matchMs).');

export const errorResponse = z.object({
  error: z.object({
    code: z.string().describe('Stable error code, e.g. IMAGE_CORRUPT, NO_FACE, QUEUE_FULL.'),
    message: z.string(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

export const detectedFace = z.object({
  box,
  score: z
    .number()
    .describe('Detector confidence that the box is a face (0-1); not an identity similarity.'),
  landmarks: z
    .array(point)
    .length(5)
    .describe('Right eye, left eye, nose tip, right and left mouth corner (subject view).'),
});

export const detectResponse = z.object({
  image: imageSize,
  faces: z.array(detectedFace),
  timings: timings.optional(),
});

const candidate = z.object({
  visitorId: z.string().uuid(),
  externalId: z.string().nullable(),
  name: z.string(),
  similarity: z
    .number()
    .describe(
      'Cosine similarity of the face to the visitor: to the mean of their enrolled faces, or to the most similar of them with IDENTIFY_SCORING=best.',
    ),
});

export const recognizeResponse = z.object({
  image: imageSize,
  modelId: z.string(),
  threshold: z.number().describe('Identification threshold applied to this request.'),
  faces: z.array(
    detectedFace.extend({
      match: candidate
        .nullable()
        .describe('The best candidate when its similarity reaches the threshold, else null.'),
      candidates: z.array(candidate).describe('Top top_k distinct visitors, best first.'),
    }),
  ),
  timings: timings.optional(),
});

export const verifyResponse = z.object({
  similarity: z.number(),
  match: z.boolean(),
  threshold: z.number(),
  modelId: z.string(),
});

export const visitorResponse = z.object({
  id: z.string().uuid(),
  externalId: z.string().nullable(),
  name: z.string(),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const visitorListResponse = z.object({
  items: z.array(visitorResponse),
  total: z.number().int(),
  nextCursor: z.string().nullable(),
});

const storedFace = z.object({
  id: z.number().int(),
  visitorId: z.string().uuid(),
  modelId: z.string(),
  detectionScore: z.number().nullable(),
  box: box.nullable(),
  faceSize: z.number().nullable(),
  imageSha256: z.string(),
  createdAt: z.string(),
});

export const enrolResponse = z.object({
  face: storedFace,
  created: z.boolean().describe('False when the same image was already stored for this visitor.'),
  seq: z.number().int(),
  facesDetected: z.number().int(),
});

export const faceListResponse = z.object({
  items: z.array(storedFace.extend({ dim: z.number().int() })),
});

export const indexResponse = z
  .object({
    size: z.number().int(),
    capacity: z.number().int(),
    deletedCount: z.number().int(),
    M: z.number().int(),
    efConstruction: z.number().int(),
    ef: z.number().int(),
    modelId: z.string(),
    lastPersistedAt: z.string().nullable(),
    hnswlibBuild: z
      .enum(['avx2', 'portable'])
      .optional()
      .describe("The matcher's hnswlib addon: built with AVX2 and FMA, or portable."),
    scoring: z
      .enum(['fused', 'best'])
      .optional()
      .describe(
        "How a visitor with several faces is scored (IDENTIFY_SCORING): against the mean of their faces ('fused') or their most similar face ('best').",
      ),
    identifyThreshold: z
      .number()
      .optional()
      .describe('The identification threshold of recognize requests that do not set one.'),
    state: z.string().optional(),
    rebuild: z.unknown().optional(),
    replicas: z.number().int(),
  })
  .passthrough();

export const healthResponse = z.object({ status: z.literal('ok') });

export const readyResponse = z.object({
  status: z.enum(['ready', 'not ready']),
  auth: z.enum(['open', 'keys']),
  checks: z.record(z.string(), z.object({ ok: z.boolean() }).passthrough()),
});

export const batchAcceptedResponse = z
  .object({ id: z.string().uuid(), status: z.string() })
  .passthrough();

export const batchReportResponse = z
  .object({
    id: z.string().uuid(),
    status: z.string(),
    total: z.number().int(),
    done: z.number().int(),
    facesStored: z.number().int(),
    noFace: z.number().int(),
    multipleFaces: z.number().int(),
    tooSmall: z.number().int(),
    failed: z.number().int(),
    skipped: z.number().int(),
    pending: z.number().int(),
  })
  .passthrough();

export const batchListResponse = z.object({
  items: z.array(batchReportResponse),
  nextCursor: z.string().nullable(),
});

export const batchItemsResponse = z
  .object({ items: z.array(z.record(z.string(), z.unknown())) })
  .passthrough();

export const keyResponse = z.object({
  id: z.string(),
  name: z.string(),
  scopes: z.array(z.enum(['recognize', 'enrol', 'admin'])),
  source: z.literal('database'),
  createdBy: z.string(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});

export const createdKeyResponse = keyResponse.extend({
  key: z.string().describe('The API key; shown only in this response.'),
});

export const keyListResponse = z.object({
  items: z.array(
    z.union([
      keyResponse,
      z.object({ id: z.string(), source: z.literal('environment'), revokedAt: z.null() }),
    ]),
  ),
});

export const auditResponse = z.object({
  items: z.array(
    z.object({
      id: z.number().int(),
      at: z.string(),
      keyId: z.string().nullable(),
      action: z.string(),
      targetType: z.string(),
      targetId: z.string(),
      requestId: z.string().nullable(),
      details: z.record(z.string(), z.unknown()),
    }),
  ),
  nextBefore: z.number().int().nullable(),
});

export const erasurePendingResponse = z.object({
  status: z.literal('pending'),
  message: z.string(),
  seq: z.number().int(),
  confirmed: z.array(z.string()),
  pending: z.array(z.string()),
});
