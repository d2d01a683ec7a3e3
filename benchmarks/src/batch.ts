// Bulk extraction benchmark (`npm run bench:batch`). It starts the stack (gateway,
// inference workers, matcher) with the Stack harness and runs one directory batch over
// the LFW photos in FACES_DIR/lfw (11,817 photos, or the first --limit N in name order).
// It prints the images/s of the batch next to the CPU limit measured in the same run,
// which is the core count divided by the in-process per-image cost of
// FacePipeline.analyze on one thread over a sample of LFW photos. That cost is measured
// before and after the batch and the mean is used, because the machine's speed drifts
// by several per cent within minutes. Every few seconds it samples each process's
// resident memory (VmRSS in /proc/<pid>/status) to show whether memory stays flat.
// Options: --limit N (photos), --sample N (photos timed in-process, default 200),
// --rss-interval-ms N (default 3000), --workers N (inference worker processes,
// default 1 as in npm start; INFERENCE_THREADS from the environment reaches them).
import { mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { loadConfig } from '@facegate/config';
import { Stack, call } from '@facegate/testing';
import { ATOMIC_GC_FLAG, FacePipeline, atomicGarbageCollection } from '@facegate/vision';

import { FACES_MISSING, facesDir } from './faces-dir.js';
import { cpuMsPerUnit, cpuSnapshot } from './process-cpu.js';

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(`--${name} must be a positive integer\n`);
    process.exit(2);
  }
  return value;
}

/** LFW photos in person, then file name order. */
async function lfwPhotos(lfw: string, limit: number): Promise<{ person: string; file: string }[]> {
  const photos: { person: string; file: string }[] = [];
  for (const person of (await readdir(lfw)).sort()) {
    for (const file of (await readdir(join(lfw, person))).sort()) {
      photos.push({ person, file });
      if (photos.length >= limit) return photos;
    }
  }
  return photos;
}

/** Creates symbolic links to the photos in the layout a directory batch reads. */
async function linkPhotos(
  lfw: string,
  photos: { person: string; file: string }[],
  dir: string,
): Promise<void> {
  for (const { person, file } of photos) {
    await mkdir(join(dir, person), { recursive: true });
    await symlink(join(lfw, person, file), join(dir, person, file));
  }
}

/** Milliseconds per image of FacePipeline.analyze in this process, on one thread. */
async function inProcessCostMs(
  lfw: string,
  photos: { person: string; file: string }[],
): Promise<number> {
  const pipeline = await FacePipeline.create(loadConfig({}));
  try {
    const images = await Promise.all(
      photos.map(({ person, file }) => readFile(join(lfw, person, file))),
    );
    for (const bytes of images.slice(0, 20)) await pipeline.analyze(bytes); // warm-up
    const started = performance.now();
    for (const bytes of images) await pipeline.analyze(bytes);
    return (performance.now() - started) / images.length;
  } finally {
    await pipeline.close();
  }
}

async function rssKiB(pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined; // the process has exited
  }
}

interface RssSeries {
  samples: { atS: number; kib: number }[];
}

function startRssSampling(
  stack: Stack,
  intervalMs: number,
  startedMs: number,
): { stop(): Map<string, RssSeries> } {
  const series = new Map<string, RssSeries>();
  const sample = async (): Promise<void> => {
    for (const [name, child] of stack.processes) {
      if (child.pid === undefined) continue;
      const kib = await rssKiB(child.pid);
      if (kib === undefined) continue;
      const entry = series.get(name) ?? { samples: [] };
      entry.samples.push({ atS: Math.round((performance.now() - startedMs) / 1000), kib });
      series.set(name, entry);
    }
  };
  void sample();
  const timer = setInterval(() => void sample(), intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return series;
    },
  };
}

function mib(kib: number): string {
  return (kib / 1024).toFixed(0);
}

async function main(): Promise<void> {
  // The in-process reference needs the garbage collection settings of the inference workers.
  if (!atomicGarbageCollection()) {
    console.warn(`started without ${ATOMIC_GC_FLAG}: run it through its npm script`);
  }
  const faces = facesDir();
  if (!faces) {
    process.stderr.write(`${FACES_MISSING}\n`);
    process.exit(2);
  }
  const lfw = join(faces, 'lfw');
  const limit = option('limit', Number.MAX_SAFE_INTEGER);
  const sampleSize = option('sample', 200);
  const rssIntervalMs = option('rss-interval-ms', 3000);
  const workers = option('workers', 1);
  const threads = loadConfig().inferenceThreads;
  const cores = cpus().length;

  const photos = await lfwPhotos(lfw, limit);
  const sample = photos
    .filter((_, index) => index % Math.max(1, Math.floor(photos.length / sampleSize)) === 0)
    .slice(0, sampleSize);
  process.stderr.write(
    `timing FacePipeline.analyze in-process on ${sample.length} LFW photos...\n`,
  );
  const costBeforeMs = await inProcessCostMs(lfw, sample);

  // The whole set is read in place; a limited one through a folder of links.
  const linkDir =
    photos.length < 11_817 ? await mkdtemp(join(tmpdir(), 'facegate-bench-batch-')) : undefined;
  if (linkDir) await linkPhotos(lfw, photos, linkDir);
  const source = linkDir ?? lfw;

  const stack = new Stack();
  const releaseSignals = stack.stopOnSignals();
  await stack.start({ workers, env: { LOG_LEVEL: 'warn' } });
  const startedMs = performance.now();
  const rss = startRssSampling(stack, rssIntervalMs, startedMs);
  const cpuBefore = await cpuSnapshot(stack);
  let cpuAfter = new Map<string, number>();
  let report: Record<string, unknown> = {};
  let series = new Map<string, RssSeries>();
  try {
    const created = await call(stack, 'POST', '/api/v1/batches', {
      json: { source: { type: 'directory', path: source } },
    });
    if (created.status !== 202)
      throw new Error(
        `POST /api/v1/batches returned ${created.status}: ${JSON.stringify(created.json)}`,
      );
    const batchId = (created.json as { id: string }).id;
    let lastLogMs = 0;
    for (;;) {
      report = (await call(stack, 'GET', `/api/v1/batches/${batchId}`)).json as Record<
        string,
        unknown
      >;
      if (report.status !== 'planning' && report.status !== 'running') break;
      if (performance.now() - lastLogMs > 10_000) {
        process.stderr.write(
          `${String(report.done)}/${String(report.total)} after ${((performance.now() - startedMs) / 1000).toFixed(0)} s\n`,
        );
        lastLogMs = performance.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    cpuAfter = await cpuSnapshot(stack);
  } finally {
    series = rss.stop();
    await stack.stopAll();
    releaseSignals();
    if (linkDir) await rm(linkDir, { recursive: true, force: true });
  }
  process.stderr.write('timing FacePipeline.analyze in-process again...\n');
  const costAfterMs = await inProcessCostMs(lfw, sample);
  const costMs = (costBeforeMs + costAfterMs) / 2;
  const cpuLimit = (cores * 1000) / costMs;

  {
    const wallS = (performance.now() - startedMs) / 1000;
    const created = Date.parse(String(report.createdAt));
    const finished = Date.parse(String(report.finishedAt));
    const batchS = (finished - created) / 1000;
    const total = Number(report.total);
    const lines = [
      `bulk extraction of ${total} LFW photos, directory source, ${workers} inference worker(s) with ${threads} thread(s) each, ${cores} cores`,
      `status ${String(report.status)}: stored ${String(report.facesStored)}, multiple faces ${String(report.multipleFaces)}, no face ${String(report.noFace)}, too small ${String(report.tooSmall)}, failed ${String(report.failed)}`,
      `throughput: ${(total / batchS).toFixed(1)} images/s (${batchS.toFixed(1)} s from POST to completed; ${wallS.toFixed(1)} s with polling)`,
      `CPU limit: ${cpuLimit.toFixed(1)} images/s (${cores} cores / ${costMs.toFixed(2)} ms per image in-process, ${sample.length} LFW photos, one thread; ${costBeforeMs.toFixed(2)} ms before the batch, ${costAfterMs.toFixed(2)} ms after)`,
      `throughput / CPU limit: ${((total / batchS / cpuLimit) * 100).toFixed(0)}%`,
      'resident memory (VmRSS, MiB): process first -> max -> last, samples',
    ];
    for (const [name, { samples }] of series) {
      const values = samples.map((s) => s.kib);
      lines.push(
        `  ${name}: ${mib(values[0] ?? 0)} -> ${mib(Math.max(...values))} -> ${mib(values[values.length - 1] ?? 0)} (${values.length} samples every ${rssIntervalMs} ms)`,
      );
    }
    lines.push('CPU per image (ms, user + system, during the batch):');
    let totalMs = 0;
    for (const [name, perImageMs] of cpuMsPerUnit(cpuBefore, cpuAfter, total)) {
      totalMs += perImageMs;
      lines.push(`  ${name}: ${perImageMs.toFixed(2)}`);
    }
    lines.push(`  all: ${totalMs.toFixed(2)} (in-process pipeline: ${costMs.toFixed(2)})`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
}

await main();
