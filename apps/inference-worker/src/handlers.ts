import { createHash } from 'node:crypto';

import type { Config } from '@facegate/config';
import {
  type DetectResult,
  type EmbeddedFace,
  type EnrolResult,
  type InferenceJob,
  type KeyNames,
  type MatchJob,
  type Queues,
  type RecognizeResult,
  type Reply,
  type VerifyResult,
  defaultIdentifyThreshold,
  encodeVector,
  getBlob,
  matchEntryArguments,
} from '@facegate/contracts';
import {
  type Database,
  getVisitor,
  insertFace,
  listVisitorEmbeddings,
  maxChangeSeq,
} from '@facegate/db';
import { FaceGateError, namingInput } from '@facegate/errors';
import {
  cosineSimilarity,
  defaultVerifyThreshold,
  faceNearest,
  largestFace,
} from '@facegate/vision';
import type { Redis } from 'ioredis';

import type { VisionPool } from './pool.js';

export interface HandlerContext {
  config: Config;
  pool: VisionPool;
  redis: Redis;
  keys: KeyNames;
  queues: Queues;
  db: Database;
}

/**
 * A job's outcome: a result for the gateway, or an identify request for the matchers, which
 * then reply to the gateway.
 */
export type HandlerOutcome = { reply: unknown } | { forward: MatchJob };

/**
 * Maximum time kept free between an enrolment's last deadline check and the gateway's deadline,
 * for the write and the reply. A job whose whole budget is shorter keeps a quarter of it.
 */
const ENROL_WRITE_MARGIN_MS = 1000;

/** Raised when a job reaches its deadline before its write; never retried. */
export class DeadlineError extends FaceGateError {
  constructor(message: string) {
    super('TIMEOUT', message);
  }
}

/** Returns true when the gateway that sent the job has stopped waiting for it. */
export function jobExpired(job: InferenceJob, now = Date.now()): boolean {
  return job.deadline !== undefined && now >= job.deadline;
}

const round = (value: number, digits = 3): number =>
  Math.round(value * 10 ** digits) / 10 ** digits;

function roundTimings(timings: Record<string, number | undefined>): Record<string, number> {
  const rounded: Record<string, number> = {};
  for (const [key, value] of Object.entries(timings))
    if (value !== undefined) rounded[key] = round(value);
  return rounded;
}

async function detect(
  context: HandlerContext,
  job: Extract<InferenceJob, { kind: 'detect' }>,
  queueWaitMs: number,
): Promise<HandlerOutcome> {
  const bytes = await getBlob(context.redis, job.blobKey);
  const result = await context.pool.detect(bytes, job.params);
  const reply: DetectResult = {
    image: result.image,
    faces: result.faces,
    timings: roundTimings({ queueWaitMs, ...result.timings }),
  };
  return { reply };
}

async function recognize(
  context: HandlerContext,
  job: Extract<InferenceJob, { kind: 'recognize' }>,
  queueWaitMs: number,
): Promise<HandlerOutcome> {
  const bytes = await getBlob(context.redis, job.blobKey);
  const result = await context.pool.analyze(bytes, job.params);
  const timings = roundTimings({ queueWaitMs, ...result.timings });

  if (result.faces.length === 0) {
    const threshold =
      job.match.threshold ??
      context.config.identifyThreshold ??
      defaultIdentifyThreshold(result.modelId, context.config.identifyScoring);
    const reply: RecognizeResult = {
      image: result.image,
      modelId: result.modelId,
      threshold,
      faces: [],
      timings,
    };
    return { reply };
  }

  const faces: EmbeddedFace[] = result.faces.map(({ embedding, ...face }) => ({
    ...face,
    embedding: encodeVector(embedding),
  }));
  const forward: MatchJob = {
    kind: 'identify',
    correlationId: job.correlationId,
    replyTo: job.replyTo,
    requestId: job.requestId,
    ...(job.deadline === undefined ? {} : { deadline: job.deadline }),
    modelId: result.modelId,
    image: result.image,
    faces,
    params: job.match,
    timings,
  };
  return { forward };
}

async function enrol(
  context: HandlerContext,
  job: Extract<InferenceJob, { kind: 'enrol' }>,
  queueWaitMs: number,
): Promise<HandlerOutcome> {
  const enqueuedAt = Date.now() - queueWaitMs;
  const bytes = await getBlob(context.redis, job.blobKey);
  const imageSha256 = createHash('sha256').update(bytes).digest();
  const result = await context.pool.analyze(bytes, {});

  if (result.faces.length === 0)
    throw new FaceGateError('NO_FACE', 'no face was found in the image');
  if (result.faces.length > 1 && job.multipleFaces === 'strict') {
    throw new FaceGateError(
      'MULTIPLE_FACES',
      `the image shows ${result.faces.length} faces; enrol a photo with one face, or set multiple_faces=largest ` +
        'to take the largest or multiple_faces=centre to take the one nearest the centre',
      { details: { facesDetected: result.faces.length } },
    );
  }
  const face =
    job.multipleFaces === 'centre'
      ? faceNearest(result.faces, result.image.width / 2, result.image.height / 2)!
      : largestFace(result.faces)!;
  const faceSize = Math.round(Math.min(face.box.width, face.box.height));
  if (faceSize < context.config.enrolMinFaceSize) {
    throw new FaceGateError(
      'FACE_TOO_SMALL',
      `the face is ${faceSize} px on its shorter side; enrolment needs at least ${context.config.enrolMinFaceSize} px`,
      { details: { faceSize, minFaceSize: context.config.enrolMinFaceSize } },
    );
  }

  // A face stored after the gateway sent 504 would surprise the client, whose enrolment had
  // failed. NOTE: a write that starts before this check and commits after the
  // deadline (PostgreSQL stalled for longer than the margin) is still stored.
  if (job.deadline !== undefined) {
    const margin = Math.min(ENROL_WRITE_MARGIN_MS, (job.deadline - enqueuedAt) / 4);
    if (Date.now() > job.deadline - margin) {
      throw new DeadlineError(
        'the enrolment reached its deadline before the face was stored; nothing was stored, retry the request',
      );
    }
  }
  const stored = await insertFace(context.db, {
    visitorId: job.visitorId,
    modelId: result.modelId,
    embedding: face.embedding,
    detectionScore: face.score,
    box: face.box,
    faceSize,
    imageSha256,
    audit: { actor: { keyId: job.keyId ?? null, requestId: job.requestId } },
  });
  const seq = await maxChangeSeq(context.db);
  const reply: EnrolResult = {
    face: {
      id: stored.face.id,
      visitorId: stored.face.visitorId,
      modelId: stored.face.modelId,
      detectionScore: stored.face.detectionScore ?? face.score,
      box: stored.face.box ?? face.box,
      faceSize: stored.face.faceSize ?? faceSize,
      imageSha256: stored.face.imageSha256.toString('hex'),
      createdAt: stored.face.createdAt.toISOString(),
    },
    created: stored.created,
    seq,
    facesDetected: result.faces.length,
  };
  return { reply };
}

/**
 * Embeds the largest face of one image of a verify request. `field` is the request's
 * field name, put in image errors so a client can tell which of its images is at fault.
 */
async function largestFaceVector(
  context: HandlerContext,
  blobKey: string,
  field: string,
  label: string,
): Promise<{ vector: Float32Array; modelId: string }> {
  const bytes = await getBlob(context.redis, blobKey);
  const result = await context.pool.analyze(bytes, {}).catch((error: unknown) => {
    throw namingInput(error, field);
  });
  const face = largestFace(result.faces);
  if (!face) throw new FaceGateError('NO_FACE', `no face was found in ${label}`);
  return { vector: face.embedding, modelId: result.modelId };
}

async function verify(
  context: HandlerContext,
  job: Extract<InferenceJob, { kind: 'verify' }>,
): Promise<HandlerOutcome> {
  const probe = job.visitorId
    ? await largestFaceVector(context, job.blobKeys[0], 'image', 'the image')
    : await largestFaceVector(context, job.blobKeys[0], 'image_a', 'image_a');
  const threshold =
    job.threshold ?? context.config.verifyThreshold ?? defaultVerifyThreshold(probe.modelId);

  let similarity: number;
  if (job.visitorId) {
    if (!(await getVisitor(context.db, job.visitorId))) {
      throw new FaceGateError('NOT_FOUND', `visitor ${job.visitorId} does not exist`);
    }
    const stored = await listVisitorEmbeddings(context.db, job.visitorId, probe.modelId);
    // The best of the visitor's enrolled faces decides.
    similarity = Math.max(
      -1,
      ...stored.map((embedding) => cosineSimilarity(probe.vector, embedding)),
    );
    if (stored.length === 0) {
      // CONFLICT, not NO_FACE: the image has a face, and the visitor's state is what fails.
      throw new FaceGateError(
        'CONFLICT',
        `visitor ${job.visitorId} has no enrolled face for model ${probe.modelId}; enrol a photo of the visitor first`,
      );
    }
  } else {
    const other = await largestFaceVector(context, job.blobKeys[1]!, 'image_b', 'image_b');
    similarity = cosineSimilarity(probe.vector, other.vector);
  }
  const reply: VerifyResult = {
    similarity: round(similarity, 6),
    match: similarity >= threshold,
    threshold,
    modelId: probe.modelId,
  };
  return { reply };
}

export async function handleInferenceJob(
  context: HandlerContext,
  job: InferenceJob,
  queueWaitMs: number,
): Promise<HandlerOutcome> {
  switch (job.kind) {
    case 'detect':
      return detect(context, job, queueWaitMs);
    case 'recognize':
      return recognize(context, job, queueWaitMs);
    case 'enrol':
      return enrol(context, job, queueWaitMs);
    case 'verify':
      return verify(context, job);
  }
}

/** Blob keys a job reads; deleted once the job is finished for good. */
export function blobKeysOf(job: InferenceJob): string[] {
  return job.kind === 'verify' ? [...job.blobKeys] : [job.blobKey];
}

/**
 * Sends a job's outcome (the reply to the gateway, or the identify request to the matchers)
 * and deletes the job's images, in one round trip. The commands run as one transaction, so
 * that when Redis rejects it (out of memory, say) the images stay for the retry.
 * NOTE: a command that fails while the transaction runs (WRONGTYPE) does not stop the DEL.
 */
export async function finishJob(
  redis: Redis,
  keys: KeyNames,
  job: InferenceJob,
  outcome: HandlerOutcome,
): Promise<void> {
  const transaction = redis.multi();
  if ('forward' in outcome) {
    const [stream, ...rest] = matchEntryArguments(keys, outcome.forward);
    transaction.xadd(stream!, ...rest);
  } else {
    const reply: Reply = { correlationId: job.correlationId, ok: true, result: outcome.reply };
    transaction.publish(job.replyTo, JSON.stringify(reply));
  }
  transaction.del(...blobKeysOf(job));
  const results = await transaction.exec();
  const error = results?.find(([commandError]) => commandError !== null)?.[0];
  if (error) throw error;
}
