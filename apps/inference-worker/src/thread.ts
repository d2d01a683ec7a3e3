// Piscina worker thread: owns one FacePipeline (two ONNX sessions) for its
// whole life and runs decode, detection, alignment and embedding for the
// process's BullMQ processors. Errors come back as values, because a
// FaceGateError thrown across the thread boundary would lose its code.
import { loadConfig } from '@facegate/config';
import { type SerializedError, serializeError } from '@facegate/errors';
import { FacePipeline } from '@facegate/vision';

import type { ThreadRequest, ThreadResponse } from './thread-messages.js';

const pipelineReady: Promise<FacePipeline> = FacePipeline.create(loadConfig());
// Keeps an early model-load failure from becoming an unhandled rejection; the
// first task reports it.
pipelineReady.catch(() => undefined);

async function handle(request: ThreadRequest): Promise<ThreadResponse> {
  const pipeline = await pipelineReady;
  switch (request.op) {
    case 'ping':
      return { op: 'ping', modelId: pipeline.modelId, models: pipeline.models };
    case 'detect': {
      const result = await pipeline.detect(request.bytes, request.params);
      return { op: 'detect', image: result.image, faces: result.faces, timings: result.timings };
    }
    case 'analyze': {
      const result = await pipeline.analyze(request.bytes, request.params);
      return {
        op: 'analyze',
        modelId: pipeline.modelId,
        image: result.image,
        faces: result.faces.map(({ embedding, ...face }) => ({
          ...face,
          embedding: embedding.vector,
        })),
        timings: result.timings,
      };
    }
  }
}

export default async function run(
  request: ThreadRequest,
): Promise<ThreadResponse | { error: SerializedError }> {
  try {
    return await handle(request);
  } catch (error) {
    return { error: serializeError(error) };
  }
}
