// CPU time of processes, read from /proc (Linux): the stack's own processes and the
// PostgreSQL and Redis servers they use, for "CPU ms per request or image" figures.
import { readFile, readdir } from 'node:fs/promises';

import type { Stack } from '@facegate/testing';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux x86-64). */
const CLOCK_TICKS_PER_SECOND = 100;

/** Reads the fields of /proc/<pid>/stat that follow the command name, which may contain spaces. */
async function statFields(pid: number | 'self'): Promise<string[] | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Returns the CPU seconds (user + system) a process has used, or undefined once it has exited. */
export async function cpuSecondsOf(pid: number): Promise<number | undefined> {
  const fields = await statFields(pid);
  return fields && (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/** Returns the CPU seconds used by children of this process that have exited and been waited for. */
export async function exitedChildrenCpuSeconds(): Promise<number> {
  const fields = await statFields('self');
  return fields ? (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS_PER_SECOND : 0;
}

/** Lists the pids of every process whose command name is `command` (PostgreSQL backends, Redis). */
async function pidsOf(command: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === command) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Reads the CPU seconds used so far by each stack process and, summed, by every PostgreSQL
 * and Redis server process of the machine (other clients of those servers count too).
 */
export async function cpuSnapshot(stack: Stack): Promise<Map<string, number>> {
  const snapshot = new Map<string, number>();
  for (const [name, child] of stack.processes) {
    const seconds = child.pid === undefined ? undefined : await cpuSecondsOf(child.pid);
    if (seconds !== undefined) snapshot.set(name, seconds);
  }
  for (const [label, command] of [
    ['postgresql', 'postgres'],
    ['redis', 'redis-server'],
  ] as const) {
    let total = 0;
    for (const pid of await pidsOf(command)) total += (await cpuSecondsOf(pid)) ?? 0;
    snapshot.set(label, total);
  }
  return snapshot;
}

/** Computes the CPU milliseconds per unit of work of each process between two snapshots. */
export function cpuMsPerUnit(
  before: Map<string, number>,
  after: Map<string, number>,
  units: number,
): Map<string, number> {
  const perUnit = new Map<string, number>();
  for (const [name, seconds] of after) {
    perUnit.set(name, ((seconds - (before.get(name) ?? seconds)) * 1000) / Math.max(1, units));
  }
  return perUnit;
}
