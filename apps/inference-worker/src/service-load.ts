// Whether the service is otherwise idle, sampled from the queues in Redis: a job
// that starts then may use more ONNX threads (ONNX_IDLE_THREADS), because no other
// job needs the cores. Every worker process samples on its own.
import type { Queues } from '@facegate/contracts';
import type { Logger } from '@facegate/logger';

/** How often the job counts are read; a burst can start up to this long before it is seen. */
export const LOAD_SAMPLE_INTERVAL_MS = 50;

export class ServiceLoadSampler {
  readonly #queues: Queues;
  readonly #logger: Logger;
  #idle = false;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  #sampling = false;
  #stopped = false;

  constructor(queues: Queues, logger: Logger) {
    this.#queues = queues;
    this.#logger = logger;
  }

  /**
   * True when the last sample found at most one inference job active or waiting (the
   * job that is about to start, in either state) and no batch job. False until the
   * first sample, after stop() and while Redis cannot be read.
   */
  get idle(): boolean {
    return this.#idle;
  }

  start(): void {
    void this.#sample();
    this.#timer = setInterval(() => void this.#sample(), LOAD_SAMPLE_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#idle = false;
  }

  async #sample(): Promise<void> {
    // A slow Redis must not pile up reads, and a read that ends after stop() is ignored.
    if (this.#sampling) return;
    this.#sampling = true;
    try {
      const [inference, batch] = await Promise.all([
        this.#queues.inference.getJobCounts('active', 'waiting', 'prioritized'),
        this.#queues.batch.getJobCounts('active', 'waiting', 'prioritized'),
      ]);
      const inferenceJobs =
        (inference.active ?? 0) + (inference.waiting ?? 0) + (inference.prioritized ?? 0);
      const batchJobs = (batch.active ?? 0) + (batch.waiting ?? 0) + (batch.prioritized ?? 0);
      this.#idle = !this.#stopped && inferenceJobs <= 1 && batchJobs === 0;
      if (this.#failing) this.#logger.info('queue counts readable again');
      this.#failing = false;
    } catch (error) {
      this.#idle = false;
      if (!this.#failing) {
        this.#logger.warn({ err: error }, 'reading the queue counts failed; idle threads unused');
      }
      this.#failing = true;
    } finally {
      this.#sampling = false;
    }
  }
}
