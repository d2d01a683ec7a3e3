// The command that starts one app (npm start, the test stack and the benchmarks use it):
// node with the flags that the app's package.json lists under facegate.nodeFlags, run under
// the SCHED_BATCH scheduling policy where Linux and chrt allow it.
//
// Why SCHED_BATCH: on one machine the inference threads keep every core busy under load. Each
// time the gateway, a worker's main thread or the matcher woke up for a Redis reply or a
// socket, it preempted one of them, about 9 times per image. A task under SCHED_BATCH does not
// preempt the running task when it wakes. It runs at the next scheduler tick instead, and then
// handles everything that arrived meanwhile. On a 2-core machine that halved the preemptions and gave
// about 3 % more requests per second at concurrency 16, while a lone request, which finds a
// core idle, was not slower. FACEGATE_SCHED_BATCH=off starts the apps with the default policy.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Returns the Node flags that the app's package.json lists under facegate.nodeFlags. */
export function nodeFlags(root, entry) {
  const manifest = JSON.parse(readFileSync(join(root, entry, '../../../package.json'), 'utf8'));
  return manifest.facegate?.nodeFlags ?? [];
}

let batchAvailable;

/**
 * Returns true when chrt can run a program under SCHED_BATCH here. A container may lack chrt
 * or forbid the system call, and an app must start all the same, so chrt is tried once first.
 */
function canRunBatch() {
  if (batchAvailable === undefined) {
    batchAvailable =
      process.platform === 'linux' &&
      spawnSync('chrt', ['--batch', '0', 'true'], { stdio: 'ignore' }).status === 0;
  }
  return batchAvailable;
}

/** Returns the scheduling policy that appCommand starts apps under with `env`: 'batch' or 'default'. */
export function schedulingPolicy(env = process.env) {
  return env.FACEGATE_SCHED_BATCH !== 'off' && canRunBatch() ? 'batch' : 'default';
}

/** Returns the program and arguments that start the app whose built entry is `entry` (relative to `root`). */
export function appCommand(root, entry, env = process.env) {
  const nodeArgs = [...nodeFlags(root, entry), '--enable-source-maps', join(root, entry)];
  if (schedulingPolicy(env) === 'batch') {
    return { command: 'chrt', args: ['--batch', '0', process.execPath, ...nodeArgs] };
  }
  return { command: process.execPath, args: nodeArgs };
}
