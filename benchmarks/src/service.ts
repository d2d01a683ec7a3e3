// End-to-end service benchmark (`npm run bench:service`): /api/v1/recognize on
// a 640x480 one-face JPEG with a gallery of --gallery faces (default 100,000
// random unit vectors, as the peer loads), at concurrency 1 and 16, through
// the whole stack (gateway, inference workers, matcher) started here, then
// the Python peer in ../shared/peers through its own bench.sh, one after the
// other on the same machine. Prints loadgen's figures, the server CPU per request
// of the stack's processes, and the CPU limit: cores / in-process per-image cost,
// timed right before and after the concurrency-16 phase. A second limit adds the
// in-process search of the same gallery (the matcher's index, built in this
// process) to that cost. Then it prints the CPU per request of each process, with
// PostgreSQL, Redis and the load generator itself.
// Options: --gallery N, --requests1 N, --requests16 N, --warmup N (default 2,000),
// --workers N (inference worker processes, default 1 as in npm start), --skip-peer.
// --warmup is the number of unmeasured requests before each phase, for both servers. It
// is long because V8 optimizes the apps' request paths for the first 3,000 requests or so.
// In a new stack at concurrency 16 the gateway used 1.76, 1.31, 1.01 and then 0.83-0.88 ms
// of CPU per request in successive rounds of 1,000 requests. INFERENCE_THREADS and
// INFERENCE_CONCURRENCY from the environment reach the workers.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { findRepoRoot, loadConfig } from '@facegate/config';
import { createDatabase, encodeEmbedding, migrate } from '@facegate/db';
import { FaceIndex } from '@facegate/index';
import { Stack } from '@facegate/testing';
import {
  ATOMIC_GC_FLAG,
  EMBEDDER_MODELS,
  FacePipeline,
  atomicGarbageCollection,
} from '@facegate/vision';

import { cpuMsPerUnit, cpuSnapshot, exitedChildrenCpuSeconds } from './process-cpu.js';

const root = findRepoRoot();
const peers = join(root, '..', 'shared', 'peers');
const image = join(peers, 'obama1_640x480.jpg');

function option(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  return index > 0 ? Number(process.argv[index + 1]) : fallback;
}

/** Deterministic random unit vectors (mulberry32 + Box-Muller), like the peer's load_random. */
function* randomUnitVectors(count: number, dim: number, seed: number): Generator<Float32Array> {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < count; i += 1) {
    const vector = new Float32Array(dim);
    let norm = 0;
    for (let d = 0; d < dim; d += 1) {
      const value = Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
      vector[d] = value;
      norm += value * value;
    }
    norm = Math.sqrt(norm);
    for (let d = 0; d < dim; d += 1) vector[d] = vector[d]! / norm;
    yield vector;
  }
}

/** Inserts `count` visitors with one random face each, in batches, before the matcher starts. */
async function fillGallery(stack: Stack, count: number, modelId: string): Promise<number> {
  const started = performance.now();
  const db = createDatabase({
    url: stack.env.DATABASE_URL ?? '',
    schema: stack.schema,
    maxConnections: 2,
  });
  await migrate(db);
  const { sql } = db;
  const vectors = randomUnitVectors(count, 128, 1);
  const batch = 5000;
  for (let start = 0; start < count; start += batch) {
    const size = Math.min(batch, count - start);
    const names = Array.from({ length: size }, (_, i) => `synthetic-${start + i}`);
    // Binary columns travel as hex text: the client cannot send a bytea[] parameter.
    const embeddings: string[] = [];
    const hashes: string[] = [];
    for (let i = 0; i < size; i += 1) {
      embeddings.push(encodeEmbedding(vectors.next().value as Float32Array).toString('hex'));
      hashes.push(
        Buffer.alloc(32, 0)
          .fill(String(start + i))
          .toString('hex'),
      );
    }
    await sql.begin(async (tx) => {
      const ids = await tx<{ id: string }[]>`
        insert into ${tx(stack.schema)}.visitors (name, external_id)
        select n, n from unnest(${names}::text[]) as n returning id`;
      await tx`
        insert into ${tx(stack.schema)}.faces (visitor_id, model_id, dim, embedding, image_sha256, detection_score, face_size)
        select v, ${modelId}, 128, decode(e, 'hex'), decode(h, 'hex'), 1, 112
        from unnest(${ids.map((row) => row.id)}::uuid[], ${embeddings}::text[], ${hashes}::text[]) as t(v, e, h)`;
    });
  }
  await db.close();
  return (performance.now() - started) / 1000;
}

interface LoadResult {
  count: number;
  errors: number;
  throughput_rps: number;
  latency_ms: { p50: number; p90: number; p99: number; mean: number; max: number };
}

function loadgen(url: string, concurrency: number, requests: number, warmup: number): LoadResult {
  const result = spawnSync(
    process.execPath,
    [
      join(peers, 'loadgen.mjs'),
      '--url',
      url,
      '--file',
      image,
      '--field',
      'image',
      '--concurrency',
      String(concurrency),
      '--requests',
      String(requests),
      '--warmup',
      String(warmup),
    ],
    { encoding: 'utf8', maxBuffer: 10 * 1024 * 1024 },
  );
  if (result.status !== 0) throw new Error(`loadgen failed: ${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').pop()!) as LoadResult;
}

/** Returns the configuration of the models the stack runs: FACE_DETECTOR and FACE_EMBEDDER, else the defaults. */
function modelConfig(): ReturnType<typeof loadConfig> {
  const { FACE_DETECTOR, FACE_EMBEDDER } = process.env;
  return loadConfig({
    ...(FACE_DETECTOR ? { FACE_DETECTOR } : {}),
    ...(FACE_EMBEDDER ? { FACE_EMBEDDER } : {}),
  });
}

/** Returns the mean time of `runs` in-process analyses of the benchmark image, after a warm-up. */
async function pipelineCostMs(pipeline: FacePipeline, runs: number): Promise<number> {
  const bytes = readFileSync(image);
  for (let i = 0; i < 30; i += 1) await pipeline.analyze(bytes);
  const started = performance.now();
  for (let i = 0; i < runs; i += 1) await pipeline.analyze(bytes);
  return (performance.now() - started) / runs;
}

/**
 * Builds the matcher's index (same settings) over the same `count` vectors in this process,
 * yielding every 1,000 faces so that the stack starts meanwhile.
 */
async function buildReferenceIndex(count: number): Promise<FaceIndex> {
  const config = modelConfig();
  const index = new FaceIndex({
    modelId: EMBEDDER_MODELS[config.faceEmbedder],
    dim: 128,
    M: config.hnswM,
    efConstruction: config.hnswEfConstruction,
    ef: config.hnswEf,
    initialCapacity: count,
    exactSearchMaxFaces: config.exactSearchMaxFaces,
  });
  let faceId = 0;
  for (const vector of randomUnitVectors(count, 128, 1)) {
    faceId += 1;
    index.add(faceId, `visitor-${faceId}`, vector);
    if (faceId % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return index;
}

/** Returns the mean time of one identification search (k = 1, the matcher's scoring) over `queries` random unit vectors. */
function searchCostMs(index: FaceIndex, queries: number): number {
  const { identifyScoring } = modelConfig();
  const probes = [...randomUnitVectors(queries + 50, 128, 2)];
  for (const probe of probes.slice(0, 50)) index.search(probe, { scoring: identifyScoring });
  const started = performance.now();
  for (const probe of probes.slice(50)) index.search(probe, { scoring: identifyScoring });
  return (performance.now() - started) / queries;
}

function row(
  name: string,
  concurrency: number,
  result: LoadResult,
  cpuMsPerRequest: number,
): string {
  const l = result.latency_ms;
  return `| ${name} | ${concurrency} | ${result.throughput_rps.toFixed(1)} | ${l.p50.toFixed(2)} | ${l.p90.toFixed(2)} | ${l.p99.toFixed(2)} | ${l.max.toFixed(2)} | ${result.errors} | ${cpuMsPerRequest.toFixed(1)} |`;
}

async function main(): Promise<void> {
  // The in-process reference needs the garbage collection settings of the inference workers.
  if (!atomicGarbageCollection()) {
    console.warn(`started without ${ATOMIC_GC_FLAG}: run it through its npm script`);
  }
  const gallery = option('gallery', 100_000);
  const requests1 = option('requests1', 500);
  const requests16 = option('requests16', 2000);
  const warmup = option('warmup', 2000);
  const cores = cpus().length;
  const rows: string[] = [];
  const breakdowns: string[] = [];
  let throughput16 = NaN;
  // The development machine's speed drifted by up to 2x within minutes, so the references
  // for concurrency 16 are timed right before and right after that phase.
  const bracket: { pipelineMs: number[]; searchMs: number[] } = { pipelineMs: [], searchMs: [] };

  const pipeline = await FacePipeline.create(modelConfig());
  const startMs = await pipelineCostMs(pipeline, 300);
  console.log(
    `in-process pipeline cost: ${startMs.toFixed(2)} ms per image on one thread; CPU limit ${((cores * 1000) / startMs).toFixed(1)} requests/s on ${cores} cores`,
  );

  const stack = new Stack();
  stack.env = {
    DATABASE_URL: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  };
  const releaseSignals = stack.stopOnSignals();
  try {
    const fillSeconds = await fillGallery(
      stack,
      gallery,
      EMBEDDER_MODELS[modelConfig().faceEmbedder],
    );
    console.log(`gallery: ${gallery} random unit vectors inserted in ${fillSeconds.toFixed(1)} s`);
    const started = performance.now();
    const starting = stack.start({
      workers: option('workers', 1),
      env: { LOG_LEVEL: 'warn' },
      readyTimeoutMs: 900_000,
    });
    // Built on the core that the matcher's own build leaves free, and timed once the stack is idle.
    const reference = await buildReferenceIndex(gallery);
    await starting;
    console.log(
      `stack ready (index built from PostgreSQL) in ${((performance.now() - started) / 1000).toFixed(1)} s; ` +
        `in-process search ${searchCostMs(reference, 500).toFixed(3)} ms per query`,
    );
    const timeReferences = async (): Promise<void> => {
      bracket.pipelineMs.push(await pipelineCostMs(pipeline, 150));
      bracket.searchMs.push(searchCostMs(reference, 500));
    };
    const url = `${stack.url}/api/v1/recognize`;
    for (const [concurrency, requests] of [
      [1, requests1],
      [16, requests16],
    ] as const) {
      if (warmup > 0) loadgen(url, concurrency, warmup, 0);
      if (concurrency === 16) await timeReferences();
      const before = await cpuSnapshot(stack);
      const loadgenBefore = await exitedChildrenCpuSeconds();
      const result = loadgen(url, concurrency, requests, 0);
      const perRequest = cpuMsPerUnit(before, await cpuSnapshot(stack), result.count);
      perRequest.set(
        'load generator',
        (((await exitedChildrenCpuSeconds()) - loadgenBefore) * 1000) / Math.max(1, result.count),
      );
      let stackMs = 0;
      for (const name of stack.processes.keys()) stackMs += perRequest.get(name) ?? 0;
      rows.push(row('facegate', concurrency, result, stackMs));
      if (concurrency === 16) {
        throughput16 = result.throughput_rps;
        await timeReferences();
      }
      breakdowns.push(
        `concurrency ${concurrency}: ` +
          [...perRequest].map(([name, ms]) => `${name} ${ms.toFixed(2)}`).join(', '),
      );
    }
  } finally {
    await stack.stopAll();
    releaseSignals();
    await pipeline.close();
  }

  if (
    !process.argv.includes('--skip-peer') &&
    existsSync(join(peers, 'seed_replica', 'bench.sh'))
  ) {
    const peer = spawn('bash', [join(peers, 'seed_replica', 'bench.sh'), image], {
      env: {
        ...process.env,
        GALLERY: String(gallery),
        REQUESTS_1: String(requests1),
        REQUESTS_16: String(requests16),
        WARMUP: String(warmup),
        PORT: '9100',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    peer.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => peer.on('exit', resolve));
    // A failed peer leaves facegate's figures to print, without its rows.
    if (code !== 0) console.log(`peer benchmark failed (exit ${code}); see its output above`);
    for (const line of output.split('\n')) {
      if (!line.trim().startsWith('{')) continue;
      const parsed = JSON.parse(line) as LoadResult & {
        concurrency?: number;
        server_cpu_ms_per_req?: number;
        load_random?: unknown;
      };
      if (parsed.load_random || parsed.concurrency === undefined) continue;
      rows.push(
        row(
          'peer (Python replica)',
          parsed.concurrency,
          parsed,
          parsed.server_cpu_ms_per_req ?? NaN,
        ),
      );
    }
  }

  console.log('');
  console.log(
    '| server | concurrency | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU ms/request |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const line of rows) console.log(line);
  const mean = (values: number[]): number =>
    values.reduce((sum, value) => sum + value, 0) / values.length;
  const costMs = mean(bracket.pipelineMs);
  const withSearchMs = costMs + mean(bracket.searchMs);
  const limit = (ms: number): string => ((cores * 1000) / ms).toFixed(1);
  const share = (ms: number): string => ((100 * throughput16 * ms) / (cores * 1000)).toFixed(1);
  console.log(
    `in-process references around concurrency 16: pipeline ${bracket.pipelineMs.map((ms) => ms.toFixed(2)).join(' and ')} ms, ` +
      `search ${bracket.searchMs.map((ms) => ms.toFixed(3)).join(' and ')} ms`,
  );
  console.log(
    `CPU limit: ${limit(costMs)} requests/s (${cores} cores / ${costMs.toFixed(2)} ms in-process per image); ` +
      `with the search (recognising an image includes it): ${limit(withSearchMs)} requests/s (${withSearchMs.toFixed(2)} ms)`,
  );
  console.log(
    `share of the CPU limit at concurrency 16: ${share(costMs)} % (pipeline only), ${share(withSearchMs)} % (with the search)`,
  );
  console.log('facegate CPU ms per request by process (user + system):');
  for (const line of breakdowns) console.log(`  ${line}`);
}

await main();
