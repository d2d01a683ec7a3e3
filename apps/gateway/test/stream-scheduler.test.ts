import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { FrameScheduler } from '../src/stream/scheduler.js';

/** A runner whose frames finish only when the test says so. */
class ManualRunner {
  readonly started: string[] = [];
  readonly #finishers = new Map<string, () => void>();

  run = (frame: string): Promise<void> => {
    this.started.push(frame);
    return new Promise((resolve) => this.#finishers.set(frame, resolve));
  };

  async finish(frame: string): Promise<void> {
    const finisher = this.#finishers.get(frame);
    assert.ok(finisher, `frame ${frame} is not running`);
    this.#finishers.delete(frame);
    finisher();
    await settle();
  }
}

/** Lets the scheduler's promise callbacks run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('frame scheduler', () => {
  test('starts a frame at once when there is room', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 1, maxInFlightTotal: 4 });
    const lane = scheduler.addLane(runner.run);

    const replaced = scheduler.submit(lane, 'a1');
    await settle();

    assert.equal(replaced, undefined);
    assert.deepEqual(runner.started, ['a1']);
    assert.equal(scheduler.inFlight, 1);
  });

  test('newest frame replaces the waiting one', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 1, maxInFlightTotal: 4 });
    const lane = scheduler.addLane(runner.run);

    scheduler.submit(lane, 'a1');
    const none = scheduler.submit(lane, 'a2');
    const first = scheduler.submit(lane, 'a3');
    const second = scheduler.submit(lane, 'a4');
    await settle();
    await runner.finish('a1');

    assert.equal(none, undefined);
    assert.equal(first, 'a2');
    assert.equal(second, 'a3');
    assert.deepEqual(runner.started, ['a1', 'a4']);
  });

  test('ready lanes take turns under the total limit', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 1, maxInFlightTotal: 1 });
    const a = scheduler.addLane(runner.run);
    const b = scheduler.addLane(runner.run);
    const c = scheduler.addLane(runner.run);

    scheduler.submit(a, 'a1');
    scheduler.submit(a, 'a2');
    scheduler.submit(b, 'b1');
    scheduler.submit(c, 'c1');
    await settle();
    await runner.finish('a1');
    const replaced = scheduler.submit(a, 'a3');
    await runner.finish('b1');
    scheduler.submit(b, 'b2');
    await runner.finish('c1');
    await runner.finish('a3');

    // a2 was waiting before b1 and c1 arrived, but b and c each get a turn
    // before a gets its second; a3 takes a2's place in the rotation.
    assert.equal(replaced, 'a2');
    assert.deepEqual(runner.started, ['a1', 'b1', 'c1', 'a3', 'b2']);
  });

  test('never runs more than the total limit', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 2, maxInFlightTotal: 3 });
    const lanes = [1, 2, 3, 4].map(() => scheduler.addLane(runner.run));

    lanes.forEach((lane, index) => scheduler.submit(lane, `f${index}`));
    await settle();

    assert.equal(scheduler.inFlight, 3);
    assert.deepEqual(runner.started, ['f0', 'f1', 'f2']);
  });

  test('per-lane limit above one overlaps frames of a lane', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 2, maxInFlightTotal: 8 });
    const lane = scheduler.addLane(runner.run);

    scheduler.submit(lane, 'a1');
    scheduler.submit(lane, 'a2');
    scheduler.submit(lane, 'a3');
    await settle();

    assert.deepEqual(runner.started, ['a1', 'a2']);
    assert.equal(lane.waiting, 'a3');
  });

  test('held lane keeps its frame until released', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 1, maxInFlightTotal: 4 });
    const lane = scheduler.addLane(runner.run);

    scheduler.setHeld(lane, true);
    scheduler.submit(lane, 'a1');
    await settle();
    const whileHeld = [...runner.started];
    scheduler.setHeld(lane, false);
    await settle();

    assert.deepEqual(whileHeld, []);
    assert.deepEqual(runner.started, ['a1']);
  });

  test('closed lane returns its waiting frame and starts nothing', async () => {
    const runner = new ManualRunner();
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 1, maxInFlightTotal: 4 });
    const lane = scheduler.addLane(runner.run);

    scheduler.submit(lane, 'a1');
    scheduler.submit(lane, 'a2');
    const discarded = scheduler.closeLane(lane);
    const rejected = scheduler.submit(lane, 'a3');
    await settle();
    await runner.finish('a1');

    assert.equal(discarded, 'a2');
    assert.equal(rejected, 'a3');
    assert.deepEqual(runner.started, ['a1']);
    assert.equal(scheduler.inFlight, 0);
  });

  test('failing runner frees its place', async () => {
    const scheduler = new FrameScheduler<string>({ maxInFlightPerLane: 1, maxInFlightTotal: 1 });
    const started: string[] = [];
    const lane = scheduler.addLane(async (frame) => {
      started.push(frame);
      throw new Error(`runner failed on ${frame}`);
    });

    scheduler.submit(lane, 'a1');
    await settle();
    scheduler.submit(lane, 'a2');
    await settle();

    assert.deepEqual(started, ['a1', 'a2']);
    assert.equal(scheduler.inFlight, 0);
  });
});
