// Piscina worker thread: owns one FacePipeline (two ONNX sessions) for its
// whole life and runs decode, detection, alignment and embedding for the
// process's BullMQ processors. With ONNX_IDLE_THREADS above ONNX_THREADS it also
// owns a second pipeline whose sessions use more threads, which spin between
// operators, for requests that arrive while the service is otherwise idle.
// Errors come back as values, because a FaceGateError thrown across the thread
// boundary would lose its code.
import { loadConfig } from '@facegate/config';
import { type SerializedError, serializeError } from '@facegate/errors';
import { FacePipeline, fastJpegStatus } from '@facegate/vision';

import type {
  ImageAnalysis,
  ThreadParams,
  ThreadRequest,
  ThreadResponse,
} from './thread-messages.js';

const config = loadConfig();
const pipelineReady: Promise<FacePipeline> = FacePipeline.create(config);
const idlePipelineReady: Promise<FacePipeline> | undefined =
  config.onnxIdleThreads > config.onnxThreads
    ? FacePipeline.create({ ...config, onnxThreads: config.onnxIdleThreads, onnxSpinning: true })
    : undefined;
// Keeps an early model-load failure from becoming an unhandled rejection; the
// first task reports it.
pipelineReady.catch(() => undefined);
idlePipelineReady?.catch(() => undefined);

async function handle(request: ThreadRequest): Promise<ThreadResponse> {
  const pipeline =
    'idle' in request && request.idle && idlePipelineReady
      ? await idlePipelineReady
      : await pipelineReady;
  switch (request.op) {
    case 'ping':
      if (idlePipelineReady) await idlePipelineReady;
      return {
        op: 'ping',
        modelId: pipeline.modelId,
        models: pipeline.models,
        idleThreads: idlePipelineReady ? config.onnxIdleThreads : null,
        fastJpeg: fastJpegStatus,
      };
    case 'detect': {
      const result = await pipeline.detect(request.bytes, request.params);
      return { op: 'detect', image: result.image, faces: result.faces, timings: result.timings };
    }
    case 'analyze':
      return { op: 'analyze', ...(await analyze(pipeline, request.bytes, request.params)) };
    case 'analyzeEach': {
      const results: (ImageAnalysis | { error: SerializedError })[] = [];
      for (const bytes of request.images) {
        try {
          results.push(await analyze(pipeline, bytes, request.params));
        } catch (error) {
          results.push({ error: serializeError(error) });
        }
      }
      return { op: 'analyzeEach', results };
    }
  }
}

async function analyze(
  pipeline: FacePipeline,
  bytes: Uint8Array,
  params: ThreadParams,
): Promise<ImageAnalysis> {
  const result = await pipeline.analyze(bytes, params);
  return {
    modelId: pipeline.modelId,
    image: result.image,
    faces: result.faces.map(({ embedding, ...face }) => ({ ...face, embedding: embedding.vector })),
    timings: result.timings,
  };
}

/** Promise of the last task received, which the next one waits for. */
let previousTask: Promise<unknown> = Promise.resolve();

/**
 * Runs a task after the ones received before it. The pool hands a thread its next task
 * while the current one runs (TASKS_PER_THREAD in pool.ts), so the next one starts
 * without the thread going idle, and the first one is not slowed down by the second.
 */
export default function run(
  request: ThreadRequest,
): Promise<ThreadResponse | { error: SerializedError }> {
  const task = previousTask.then(async () => {
    try {
      return await handle(request);
    } catch (error) {
      return { error: serializeError(error) };
    }
  });
  previousTask = task;
  return task;
}
