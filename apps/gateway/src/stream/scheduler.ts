// Shares the inference workers between stream connections. Each connection owns
// a lane with one waiting slot, where a newer frame replaces the waiting one,
// and the scheduler starts frames from the ready lanes in rotation, under a
// limit per lane and a limit for the whole gateway.

export interface SchedulerOptions {
  /** Frames one lane may have running at once. */
  maxInFlightPerLane: number;
  /** Frames all lanes together may have running at once. */
  maxInFlightTotal: number;
}

/** Runs one frame to completion. The scheduler ignores the outcome, and a rejection only frees the frame's place. */
export type FrameRunner<T> = (frame: T) => Promise<void>;

/** One connection's place in the scheduler. */
export class Lane<T> {
  waiting: T | undefined = undefined;
  inFlight = 0;
  /** A held lane keeps its waiting frame but gets no turns (its client is not reading). */
  held = false;
  closed = false;

  constructor(readonly run: FrameRunner<T>) {}
}

export class FrameScheduler<T> {
  readonly #options: SchedulerOptions;
  // Lanes that can start a frame now, in the order they became ready. A Set keeps
  // insertion order, so serving the first one and re-adding it at the end when it
  // is ready again gives every ready lane a turn before any lane gets a second.
  readonly #ready = new Set<Lane<T>>();
  #inFlight = 0;

  constructor(options: SchedulerOptions) {
    this.#options = options;
  }

  /** Frames running across all lanes. */
  get inFlight(): number {
    return this.#inFlight;
  }

  addLane(run: FrameRunner<T>): Lane<T> {
    return new Lane(run);
  }

  /**
   * Puts `frame` in the lane's waiting slot and starts whatever can start.
   * Returns the frame it replaced, which the caller counts as dropped.
   */
  submit(lane: Lane<T>, frame: T): T | undefined {
    if (lane.closed) return frame;
    const replaced = lane.waiting;
    lane.waiting = frame;
    this.#refresh(lane);
    this.#pump();
    return replaced;
  }

  setHeld(lane: Lane<T>, held: boolean): void {
    if (lane.held === held) return;
    lane.held = held;
    this.#refresh(lane);
    this.#pump();
  }

  /** Removes the lane and returns its waiting frame. Frames already running finish on their own. */
  closeLane(lane: Lane<T>): T | undefined {
    const waiting = lane.waiting;
    lane.closed = true;
    lane.waiting = undefined;
    this.#ready.delete(lane);
    return waiting;
  }

  #isReady(lane: Lane<T>): boolean {
    return (
      lane.waiting !== undefined &&
      !lane.closed &&
      !lane.held &&
      lane.inFlight < this.#options.maxInFlightPerLane
    );
  }

  /**
   * Puts a lane that became ready at the end of the rotation, and removes one
   * that is no longer ready. A lane already in the rotation keeps its place.
   */
  #refresh(lane: Lane<T>): void {
    if (!this.#isReady(lane)) this.#ready.delete(lane);
    else if (!this.#ready.has(lane)) this.#ready.add(lane);
  }

  #pump(): void {
    while (this.#inFlight < this.#options.maxInFlightTotal) {
      const next = this.#ready.values().next();
      if (next.done) return;
      this.#start(next.value);
    }
  }

  #start(lane: Lane<T>): void {
    const frame = lane.waiting!;
    lane.waiting = undefined;
    lane.inFlight += 1;
    this.#inFlight += 1;
    this.#ready.delete(lane);

    const finish = (): void => {
      lane.inFlight -= 1;
      this.#inFlight -= 1;
      this.#refresh(lane);
      this.#pump();
    };
    // A runner that throws synchronously or rejects must still free its place.
    void Promise.resolve()
      .then(() => lane.run(frame))
      .catch(() => undefined)
      .finally(finish);
  }
}
