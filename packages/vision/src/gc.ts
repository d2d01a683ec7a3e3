/**
 * The Node flag that turns off V8's incremental marking, so that a full collection runs in
 * one pause. With the default, V8 started marking every 10 to 15 images of the pipeline
 * although the heap stayed at about 9 MB. Without it, the pipeline used 17.4 instead of
 * 18.8 ms of CPU per 640x480 image (mean of three alternating runs) at the same wall time.
 * Fit only for processes with small heaps, where a full collection takes a few milliseconds.
 *
 * It goes on the command line: apps/inference-worker lists it under facegate.nodeFlags,
 * which npm start, the test stack and the container's entry point pass, and the speed
 * benchmarks' npm scripts give it. Node's documentation of v8.setFlagsFromString warns that
 * changing V8 flags after start-up may crash the process. Set that way, as the workers and
 * benchmarks once did, it was followed by a crash inside V8's concurrent marking.
 */
export const ATOMIC_GC_FLAG = '--no-incremental-marking';

/** Returns whether this process was started with ATOMIC_GC_FLAG. */
export function atomicGarbageCollection(): boolean {
  return process.execArgv.includes(ATOMIC_GC_FLAG);
}
