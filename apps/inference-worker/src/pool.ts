import { fileURLToPath } from 'node:url';

import { FaceGateError, deserializeError, type SerializedError } from '@facegate/errors';
import { Piscina } from 'piscina';

import type {
  ImageAnalysis,
  ThreadParams,
  ThreadRequest,
  ThreadResponse,
} from './thread-messages.js';

type AnalyzeResponse = Extract<ThreadResponse, { op: 'analyze' }>;
type DetectResponse = Extract<ThreadResponse, { op: 'detect' }>;
type PingResponse = Extract<ThreadResponse, { op: 'ping' }>;
type AnalyzeEachResponse = Extract<ThreadResponse, { op: 'analyzeEach' }>;

/**
 * Maximum tasks a thread is given at once: the one it runs and the next, which it starts
 * as soon as the first ends (thread.ts runs them in turn). With one, the thread sleeps
 * until the main thread hands over its next task, and here an LFW photo analysed after
 * 100 µs of sleep took about 0.7 ms longer than one analysed straight after another (7.8).
 * Piscina still gives a new task to an idle thread before a busy one.
 */
const TASKS_PER_THREAD = 2;

/** The thread pool that runs the vision pipeline; one FacePipeline per thread. */
export class VisionPool {
  readonly #piscina: Piscina;
  readonly threads: number;

  /** Called with the stage timings of every detect or analyze call (metrics). */
  onTimings: ((timings: Record<string, number | undefined>) => void) | undefined;

  /**
   * Returns true when no other job of the service was active or waiting at the last read of
   * the queues. A task that starts then, with no other task in this pool, runs on the threads'
   * ONNX_IDLE_THREADS sessions. Unset, every task uses the ONNX_THREADS sessions.
   */
  serviceIdle: (() => boolean) | undefined;

  /** Tasks handed to the threads and not finished yet. */
  #inFlight = 0;
  /** Tasks that ran on the idle sessions, for the heartbeat. */
  idleRuns = 0;

  /**
   * `maxTasks` is the most tasks the callers may hand over at once: the BullMQ
   * concurrency of every queue this pool serves. The real backlog waits in Redis.
   */
  constructor(threads: number, maxTasks = threads * threads) {
    this.threads = threads;
    this.#piscina = new Piscina({
      filename: fileURLToPath(new URL('./thread.js', import.meta.url)),
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      maxQueue: Math.max(maxTasks, 1),
      concurrentTasksPerWorker: TASKS_PER_THREAD,
    });
  }

  async #run<T extends ThreadResponse>(
    request: ThreadRequest,
    transfer: ArrayBuffer[] = [],
  ): Promise<T> {
    this.#inFlight += 1;
    try {
      const response = (await this.#piscina.run(request, { transferList: transfer })) as
        | T
        | { error: SerializedError };
      if ('error' in response) throw deserializeError(response.error);
      return response;
    } finally {
      this.#inFlight -= 1;
    }
  }

  /** Tasks handed to the threads and not finished yet (0 when the pool is idle). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Decides, as a task starts, whether it may use the idle sessions. */
  #idle(): boolean {
    const idle = this.#inFlight === 0 && (this.serviceIdle?.() ?? false);
    if (idle) this.idleRuns += 1;
    return idle;
  }

  /** Loads the models in every thread; rejects with the first thread's load error. */
  async warmUp(): Promise<PingResponse> {
    const responses = await Promise.all(
      Array.from({ length: this.threads }, () => this.#run<PingResponse>({ op: 'ping' })),
    );
    return responses[0]!;
  }

  async detect(bytes: Uint8Array, params: ThreadParams): Promise<DetectResponse> {
    const copy = copyForTransfer(bytes);
    const response = await this.#run<DetectResponse>(
      { op: 'detect', bytes: copy, params, idle: this.#idle() },
      [copy.buffer as ArrayBuffer],
    );
    this.onTimings?.(response.timings);
    return response;
  }

  /**
   * Runs the whole pipeline on one image in a thread. A `bytes` that spans its whole
   * ArrayBuffer is transferred, not copied, so it is unusable here afterwards.
   */
  async analyze(bytes: Uint8Array, params: ThreadParams): Promise<AnalyzeResponse> {
    const copy = copyForTransfer(bytes);
    const response = await this.#run<AnalyzeResponse>(
      { op: 'analyze', bytes: copy, params, idle: this.#idle() },
      [copy.buffer as ArrayBuffer],
    );
    this.onTimings?.({ ...response.timings });
    return response;
  }

  /**
   * Runs the whole pipeline on several images, one after another in one thread, which
   * saves a hand-over per image. The result at index i belongs to images[i]: what was
   * found, or the error of that image. Transfers the images as analyze does.
   */
  async analyzeEach(
    images: readonly Uint8Array[],
    params: ThreadParams,
  ): Promise<(ImageAnalysis | FaceGateError)[]> {
    // A buffer can be transferred once, so an image that shares one with another is copied.
    const seen = new Set<ArrayBufferLike>();
    const copies = images.map((image) => {
      const copy = seen.has(image.buffer) ? new Uint8Array(image) : copyForTransfer(image);
      seen.add(copy.buffer);
      return copy;
    });
    const response = await this.#run<AnalyzeEachResponse>(
      { op: 'analyzeEach', images: copies, params, idle: this.#idle() },
      copies.map((copy) => copy.buffer as ArrayBuffer),
    );
    return response.results.map((result) => {
      if ('error' in result) return deserializeError(result.error);
      this.onTimings?.({ ...result.timings });
      return result;
    });
  }

  get utilization(): number {
    return this.#piscina.utilization;
  }

  async close(): Promise<void> {
    await this.#piscina.destroy();
  }
}

/** A standalone copy, because a Buffer from Redis may share a pooled ArrayBuffer. */
function copyForTransfer(bytes: Uint8Array): Uint8Array {
  // An empty view may be on a buffer that was transferred already. Posting that buffer
  // again fails inside piscina and its task never settles, so post a new empty one.
  if (bytes.byteLength === 0) return new Uint8Array(0);
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes;
  return new Uint8Array(bytes);
}

export function isInputError(error: unknown): boolean {
  return error instanceof FaceGateError && !error.retryable;
}
