// Embeddings of every LFW photo, cached under os.tmpdir() so the identification
// benchmarks rerun in seconds. As a command (`node dist/src/embed-lfw.js`) it
// fills or checks the cache. Options: --pipelines N (concurrent pipelines,
// default 2), --refresh (ignore a valid cache and embed again).
import { randomUUID } from 'node:crypto';
import { readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { FACES_MISSING, facesDir, loadConfig } from '@facegate/config';
import { FacePipeline } from '@facegate/vision';

import { embedLfwImages } from './lfw.js';
import type { LfwEmbedding } from './lfw.js';

/** Bump when the cache layout or the way photos are embedded changes. */
const CACHE_FORMAT_VERSION = 1;

/** One LFW photo and its embedding; `vector` is undefined when no face was found. */
export interface LfwPhoto {
  /** Path relative to lfw/, e.g. `Abdullah_Gul/Abdullah_Gul_0001.jpg`. */
  path: string;
  person: string;
  /** Photo number within the person, from 1. */
  photoNumber: number;
  vector: Float32Array | undefined;
  found: LfwEmbedding['found'];
}

export interface LfwEmbeddingSet {
  modelId: string;
  dim: number;
  /** Every photo of lfw/, sorted by path. */
  photos: LfwPhoto[];
  byPath: Map<string, LfwPhoto>;
}

/** The models and settings that produced the cached vectors; a cache made by others is recomputed. */
interface CacheKey {
  formatVersion: number;
  modelId: string;
  embedderSha256: string;
  detectorId: string;
  detectorSha256: string;
  detectorInputSize: number;
  detectionMinScore: number;
}

interface CacheIndex extends CacheKey {
  dim: number;
  count: number;
  dataBytes: number;
  createdAt: string;
  photos: Array<{ path: string; found: LfwEmbedding['found'] }>;
}

export interface LoadLfwEmbeddingsOptions {
  facesDir: string;
  /** Concurrent pipelines used when the cache must be filled. Default 2. */
  pipelineCount?: number;
  /** Embed again even when the cache is valid. Default false. */
  refresh?: boolean;
  /** Folder of the cache files. Default os.tmpdir(). */
  cacheDir?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface LoadedLfwEmbeddings {
  set: LfwEmbeddingSet;
  source: 'cache' | 'computed';
  seconds: number;
  dataPath: string;
}

/** Returns the paths of the cache's data and index files for one embedder model. */
export function lfwCachePaths(
  modelId: string,
  cacheDir: string = tmpdir(),
): { dataPath: string; indexPath: string } {
  const base = join(cacheDir, `facegate-lfw-embeddings-${modelId}`);
  return { dataPath: `${base}.bin`, indexPath: `${base}.json` };
}

/** Lists every photo of lfw/ as `<person>/<file>`, sorted. */
export async function listLfwPhotos(lfwDir: string): Promise<string[]> {
  const paths: string[] = [];
  const people = await readdir(lfwDir, { withFileTypes: true });
  for (const person of people) {
    if (!person.isDirectory()) continue;
    const files = await readdir(join(lfwDir, person.name));
    for (const file of files) if (file.endsWith('.jpg')) paths.push(`${person.name}/${file}`);
  }
  return paths.sort();
}

/** Splits `Name/Name_0003.jpg` into the person and the photo number. */
export function parseLfwPath(path: string): { person: string; photoNumber: number } {
  const match = /^([^/]+)\/\1_(\d{4})\.jpg$/.exec(path);
  if (!match) throw new Error(`'${path}' is not an LFW photo path (<Name>/<Name>_NNNN.jpg)`);
  return { person: match[1]!, photoNumber: Number(match[2]) };
}

/**
 * Returns the embedding of every LFW photo. It reads the cache when the same
 * models and settings made it for the same photo list. Otherwise the pipeline
 * embeds the face nearest the centre of each photo, and the cache is rewritten.
 */
export async function loadLfwEmbeddings(
  options: LoadLfwEmbeddingsOptions,
): Promise<LoadedLfwEmbeddings> {
  const started = Date.now();
  const lfwDir = join(options.facesDir, 'lfw');
  const paths = await listLfwPhotos(lfwDir);
  const config = loadConfig();
  const pipelines = [await FacePipeline.create(config)];

  try {
    const first = pipelines[0]!;
    const key = cacheKeyOf(first, config.detectorInputSize);
    const { dataPath, indexPath } = lfwCachePaths(key.modelId, options.cacheDir);

    if (!options.refresh) {
      const cached = await readCache(dataPath, indexPath, key, paths);
      if (cached) {
        return { set: cached, source: 'cache', seconds: elapsedSeconds(started), dataPath };
      }
    }

    const pipelineCount = options.pipelineCount ?? 2;
    while (pipelines.length < pipelineCount) pipelines.push(await FacePipeline.create(config));
    const embeddings = await embedLfwImages(pipelines, lfwDir, paths, (done) =>
      options.onProgress?.(done, paths.length),
    );
    const dim = first.embedder.dim;
    const set = toEmbeddingSet(key.modelId, dim, paths, embeddings);
    await writeCache(dataPath, indexPath, key, set);
    return { set, source: 'computed', seconds: elapsedSeconds(started), dataPath };
  } finally {
    await Promise.all(pipelines.map((pipeline) => pipeline.close()));
  }
}

function cacheKeyOf(pipeline: FacePipeline, detectorInputSize: number): CacheKey {
  const [detector, embedder] = pipeline.models;
  return {
    formatVersion: CACHE_FORMAT_VERSION,
    modelId: pipeline.modelId,
    embedderSha256: embedder!.sha256,
    detectorId: detector!.id,
    detectorSha256: detector!.sha256,
    detectorInputSize,
    detectionMinScore: pipeline.config.detectionMinScore,
  };
}

function toEmbeddingSet(
  modelId: string,
  dim: number,
  paths: readonly string[],
  embeddings: Map<string, LfwEmbedding>,
): LfwEmbeddingSet {
  const photos = paths.map((path): LfwPhoto => {
    const embedding = embeddings.get(path);
    if (!embedding) throw new Error(`photo ${path} was not embedded`);
    if (embedding.vector && embedding.vector.length !== dim) {
      throw new Error(
        `photo ${path} has a ${embedding.vector.length}-D embedding, expected ${dim}`,
      );
    }
    return { path, ...parseLfwPath(path), vector: embedding.vector, found: embedding.found };
  });
  return { modelId, dim, photos, byPath: new Map(photos.map((photo) => [photo.path, photo])) };
}

/** Returns the cached set, or undefined when the cache is missing, stale or damaged. */
async function readCache(
  dataPath: string,
  indexPath: string,
  key: CacheKey,
  paths: readonly string[],
): Promise<LfwEmbeddingSet | undefined> {
  let index: CacheIndex;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8')) as CacheIndex;
  } catch {
    return undefined;
  }

  const keyMatches = (Object.keys(key) as Array<keyof CacheKey>).every(
    (field) => index[field] === key[field],
  );
  if (!keyMatches || index.count !== paths.length || index.photos?.length !== paths.length) {
    return undefined;
  }
  if (index.photos.some((photo, i) => photo.path !== paths[i])) return undefined;
  const expectedBytes = index.count * index.dim * Float32Array.BYTES_PER_ELEMENT;
  if (index.dataBytes !== expectedBytes) return undefined;
  const size = await stat(dataPath).then(
    (stats) => stats.size,
    () => -1,
  );
  if (size !== expectedBytes) return undefined;

  const bytes = await readFile(dataPath);
  const matrix = new Float32Array(bytes.buffer, bytes.byteOffset, index.count * index.dim);
  const embeddings = new Map<string, LfwEmbedding>();
  index.photos.forEach((photo, i) => {
    const vector =
      photo.found === 'none'
        ? undefined
        : Float32Array.from(matrix.subarray(i * index.dim, (i + 1) * index.dim));
    embeddings.set(photo.path, { vector, found: photo.found });
  });
  return toEmbeddingSet(key.modelId, index.dim, paths, embeddings);
}

/** Writes the data file, then the index: a reader trusts the data only through a matching index. */
async function writeCache(
  dataPath: string,
  indexPath: string,
  key: CacheKey,
  set: LfwEmbeddingSet,
): Promise<void> {
  const matrix = new Float32Array(set.photos.length * set.dim);
  set.photos.forEach((photo, i) => {
    if (photo.vector) matrix.set(photo.vector, i * set.dim);
  });
  const index: CacheIndex = {
    ...key,
    dim: set.dim,
    count: set.photos.length,
    dataBytes: matrix.byteLength,
    createdAt: new Date().toISOString(),
    photos: set.photos.map((photo) => ({ path: photo.path, found: photo.found })),
  };

  // The old index goes first, so a crash between the two renames never pairs it with new data.
  await rm(indexPath, { force: true });
  await writeAtomically(dataPath, new Uint8Array(matrix.buffer));
  await writeAtomically(indexPath, JSON.stringify(index));
}

async function writeAtomically(path: string, data: string | Uint8Array): Promise<void> {
  const temporaryPath = `${path}.${randomUUID()}.tmp`;
  try {
    await writeFile(temporaryPath, data);
    await rename(temporaryPath, path);
  } catch (error) {
    await rm(temporaryPath, { force: true });
    throw error;
  }
}

function elapsedSeconds(started: number): number {
  return (Date.now() - started) / 1000;
}

async function main(): Promise<void> {
  const dir = facesDir();
  if (!dir) {
    console.error(FACES_MISSING);
    process.exit(1);
  }
  const pipelinesArg = process.argv.indexOf('--pipelines');
  const pipelineCount = pipelinesArg > 0 ? Number(process.argv[pipelinesArg + 1]) : 2;
  if (!Number.isInteger(pipelineCount) || pipelineCount < 1) {
    console.error(
      `--pipelines must be a positive integer, got '${process.argv[pipelinesArg + 1]}'`,
    );
    process.exit(1);
  }

  const loaded = await loadLfwEmbeddings({
    facesDir: dir,
    pipelineCount,
    refresh: process.argv.includes('--refresh'),
    onProgress: (done, total) => {
      if (done % 1000 === 0) process.stderr.write(`embedded ${done}/${total} photos\n`);
    },
  });

  const found = { default: 0, fallback: 0, none: 0 };
  for (const photo of loaded.set.photos) found[photo.found] += 1;
  console.log(
    `${loaded.set.photos.length} LFW photos, model ${loaded.set.modelId} (${loaded.set.dim}-D), ` +
      `${loaded.source === 'cache' ? 'read from' : 'embedded into'} ${loaded.dataPath} in ${loaded.seconds.toFixed(1)} s`,
  );
  console.log(
    `face at default score ${found.default}, at fallback score ${found.fallback}, none ${found.none}`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
