// Whether the service is otherwise idle, read from the queues in Redis as a job starts:
// a job that starts then may use more ONNX threads (ONNX_IDLE_THREADS), because no other
// job needs the cores. Every worker process reads on its own.
import type { Queues } from '@facegate/contracts';
import type { Logger } from '@facegate/logger';
import type { Redis } from 'ioredis';

/**
 * Returns the total length of each queue, from its keys given in threes (waiting list,
 * active list, prioritized sorted set). BullMQ's getJobCounts runs a larger script per
 * queue: in a loop, reading both queues that way took 148 µs of the worker's CPU and this
 * script 56 µs.
 */
const QUEUE_LENGTHS_SCRIPT = `
local lengths = {}
for i = 1, #KEYS, 3 do
  lengths[#lengths + 1] = redis.call('LLEN', KEYS[i]) + redis.call('LLEN', KEYS[i + 1])
    + redis.call('ZCARD', KEYS[i + 2])
end
return lengths`;

export class ServiceLoadSampler {
  readonly #redis: Redis;
  readonly #keys: string[];
  readonly #logger: Logger;
  #idle = false;
  #failing = false;
  #reading: Promise<void> | undefined;
  #stopped = false;

  /** `redis` is a connection for plain commands; the queues give the key names. */
  constructor(redis: Redis, queues: Queues, logger: Logger) {
    this.#redis = redis;
    this.#keys = [queues.inference, queues.batch].flatMap((queue) => [
      queue.keys.wait!,
      queue.keys.active!,
      queue.keys.prioritized!,
    ]);
    this.#logger = logger;
  }

  /**
   * True when the last read found at most one inference job active or waiting (the job
   * that is about to start, in either state) and no batch job. False before the first
   * read, after stop() and while Redis cannot be read.
   */
  get idle(): boolean {
    return this.#idle;
  }

  /**
   * Returns `idle` and sets it to false, so that one read lets one task use the idle
   * sessions: a later task, such as one of a batch job, must not run on a read made for another.
   */
  take(): boolean {
    const idle = this.#idle;
    this.#idle = false;
    return idle;
  }

  /**
   * Reads the queues again, unless a read is under way. The worker calls this when it takes
   * a job and has no other task in its pool. The read goes out before the job's image is
   * fetched on the same connection, so it has landed by the time the image is analysed.
   * Reading only then, rather than on a timer, leaves an idle worker asleep.
   */
  refresh(): Promise<void> {
    this.#reading ??= this.#read().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  stop(): void {
    this.#stopped = true;
    this.#idle = false;
  }

  async #read(): Promise<void> {
    try {
      const [inferenceJobs, batchJobs] = (await this.#redis.eval(
        QUEUE_LENGTHS_SCRIPT,
        this.#keys.length,
        ...this.#keys,
      )) as [number, number];
      // A read that ends after stop() is ignored.
      this.#idle = !this.#stopped && inferenceJobs <= 1 && batchJobs === 0;
      if (this.#failing) this.#logger.info('queue counts readable again');
      this.#failing = false;
    } catch (error) {
      this.#idle = false;
      if (!this.#failing) {
        this.#logger.warn({ err: error }, 'reading the queue counts failed; idle threads unused');
      }
      this.#failing = true;
    }
  }
}
