/**
 * On-disk layout of a saved face index. Each save writes a new generation (an
 * HNSW graph file and a JSON metadata file), then replaces manifest.json, which
 * names the generation and the SHA-256 of both files. Readers trust only what
 * the manifest names, so a crash at any point leaves the previous generation readable.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export const FORMAT_VERSION = 1;
export const MANIFEST_FILE = 'manifest.json';

/** Files this module may create, with an optional temporary suffix; cleanup touches nothing else. */
const OWNED_FILE_PATTERN =
  /^(?:index-\d+\.hnsw|metadata-\d+\.json|manifest\.json)(?:\.tmp-[0-9a-f]+-[0-9a-f]+)?$/;

/** Everything besides the graph that a loaded index needs. */
export interface PersistedMetadata {
  formatVersion: number;
  generation: number;
  /** ISO 8601 time at which the saved state was captured. */
  savedAt: string;
  modelId: string;
  /** Identity of the database the faces came from; absent in files of older versions. */
  datasetId?: string;
  dim: number;
  M: number;
  efConstruction: number;
  lastSeq: number;
  counts: { faces: number; visitors: number; deleted: number; capacity: number };
  /** Live faces as [faceId (the HNSW label), visitorId]. */
  faces: Array<[number, string]>;
  /** Labels still in the graph but marked deleted. */
  deletedFaceIds: number[];
}

interface FileDigest {
  file: string;
  sizeBytes: number;
  sha256: string;
}

interface Manifest {
  formatVersion: number;
  generation: number;
  index: FileDigest;
  metadata: FileDigest;
}

export type PersistedState =
  | { kind: 'missing' }
  | { kind: 'corrupt'; reason: string }
  | { kind: 'found'; metadata: PersistedMetadata; index: FileDigest & { path: string } };

/** Outcome of a completed save. */
export interface SaveResult {
  directory: string;
  generation: number;
  savedAt: string;
  /** Change-feed seq of the saved state: every change up to it is in the saved files. */
  lastSeq: number;
  indexBytes: number;
  metadataBytes: number;
  /** Older generations and leftover temporary files deleted after the save. */
  removedFiles: string[];
  /** Stale files that could not be deleted; the save itself succeeded. */
  cleanupFailures: Array<{ file: string; message: string }>;
}

export function indexFileName(generation: number): string {
  return `index-${String(generation).padStart(8, '0')}.hnsw`;
}

export function metadataFileName(generation: number): string {
  return `metadata-${String(generation).padStart(8, '0')}.json`;
}

export function temporaryName(file: string): string {
  return `${file}.tmp-${process.pid.toString(16)}-${randomBytes(4).toString('hex')}`;
}

/** Creates `dir` if needed and returns the generation number the next save should use. */
export async function prepareDirectory(dir: string, currentGeneration: number): Promise<number> {
  await mkdir(dir, { recursive: true });
  const manifest = await readManifest(dir);
  const persistedGeneration = manifest.kind === 'found' ? manifest.manifest.generation : 0;
  return Math.max(currentGeneration, persistedGeneration) + 1;
}

/**
 * Commits a generation whose graph the caller has already written to `indexTemporaryPath`.
 *
 * The order matters for crash safety: both files are fsynced under temporary names,
 * renamed, the directory is fsynced, and only then is the manifest replaced the same way.
 */
export async function commitGeneration(
  dir: string,
  indexTemporaryPath: string,
  metadata: PersistedMetadata,
): Promise<SaveResult> {
  const generation = metadata.generation;
  const indexFile = indexFileName(generation);
  const metadataFile = metadataFileName(generation);
  const metadataBytes = Buffer.from(JSON.stringify(metadata));
  const metadataTemporaryPath = join(dir, temporaryName(metadataFile));
  const manifestTemporaryPath = join(dir, temporaryName(MANIFEST_FILE));

  try {
    await syncFile(indexTemporaryPath);
    await writeFileDurably(metadataTemporaryPath, metadataBytes);
    const indexDigest = await digestFile(indexTemporaryPath);

    await rename(indexTemporaryPath, join(dir, indexFile));
    await rename(metadataTemporaryPath, join(dir, metadataFile));
    await syncDirectory(dir);

    const manifest: Manifest = {
      formatVersion: FORMAT_VERSION,
      generation,
      index: { file: indexFile, ...indexDigest },
      metadata: {
        file: metadataFile,
        sizeBytes: metadataBytes.length,
        sha256: sha256Hex(metadataBytes),
      },
    };
    await writeFileDurably(manifestTemporaryPath, Buffer.from(JSON.stringify(manifest)));
    await rename(manifestTemporaryPath, join(dir, MANIFEST_FILE));
    await syncDirectory(dir);

    const cleanup = await removeStaleFiles(dir, new Set([MANIFEST_FILE, indexFile, metadataFile]));
    return {
      directory: dir,
      generation,
      savedAt: metadata.savedAt,
      lastSeq: metadata.lastSeq,
      indexBytes: indexDigest.sizeBytes,
      metadataBytes: metadataBytes.length,
      ...cleanup,
    };
  } catch (error) {
    // The renamed generation files may stay behind: the manifest does not name
    // them, so readers ignore them and the next successful save deletes them.
    await Promise.allSettled(
      [indexTemporaryPath, metadataTemporaryPath, manifestTemporaryPath].map((path) =>
        rm(path, { force: true }),
      ),
    );
    throw error;
  }
}

/**
 * Reads the manifest and the metadata it names, checking the metadata digest.
 * The graph file is checked separately by verifyFileDigest, so a caller can
 * compare the model first.
 */
export async function readPersistedState(dir: string): Promise<PersistedState> {
  const manifestState = await readManifest(dir);
  if (manifestState.kind !== 'found') return manifestState;
  const { manifest } = manifestState;

  const metadataPath = join(dir, manifest.metadata.file);
  let metadataBytes: Buffer;
  try {
    metadataBytes = await readFile(metadataPath);
  } catch (error) {
    return {
      kind: 'corrupt',
      reason: `metadata file ${metadataPath} is unreadable: ${errorMessage(error)}`,
    };
  }
  const digestProblem = compareDigest(metadataPath, manifest.metadata, {
    sizeBytes: metadataBytes.length,
    sha256: sha256Hex(metadataBytes),
  });
  if (digestProblem) return { kind: 'corrupt', reason: digestProblem };

  let parsed: unknown;
  try {
    parsed = JSON.parse(metadataBytes.toString('utf8'));
  } catch (error) {
    return {
      kind: 'corrupt',
      reason: `metadata file ${metadataPath} is not valid JSON: ${errorMessage(error)}`,
    };
  }
  const problem = describeMetadataProblem(parsed, manifest.generation);
  if (problem)
    return { kind: 'corrupt', reason: `metadata file ${metadataPath} is invalid: ${problem}` };

  return {
    kind: 'found',
    metadata: parsed as PersistedMetadata,
    index: { ...manifest.index, path: join(dir, manifest.index.file) },
  };
}

/** Returns why the file does not match its manifest entry, or null when it matches. */
export async function verifyFileDigest(path: string, expected: FileDigest): Promise<string | null> {
  let actual: Omit<FileDigest, 'file'>;
  try {
    actual = await digestFile(path);
  } catch (error) {
    return `file ${path} is unreadable: ${errorMessage(error)}`;
  }
  return compareDigest(path, expected, actual);
}

async function readManifest(
  dir: string,
): Promise<
  { kind: 'missing' } | { kind: 'corrupt'; reason: string } | { kind: 'found'; manifest: Manifest }
> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') return { kind: 'missing' };
    return { kind: 'corrupt', reason: `manifest ${path} is unreadable: ${errorMessage(error)}` };
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return {
      kind: 'corrupt',
      reason: `manifest ${path} is not valid JSON: ${errorMessage(error)}`,
    };
  }
  const problem = describeManifestProblem(parsed);
  if (problem) return { kind: 'corrupt', reason: `manifest ${path} is invalid: ${problem}` };
  return { kind: 'found', manifest: parsed as Manifest };
}

function describeManifestProblem(value: unknown): string | null {
  if (!isRecord(value)) return 'it is not a JSON object';
  if (value.formatVersion !== FORMAT_VERSION) {
    return `format version ${String(value.formatVersion)} is not supported (expected ${FORMAT_VERSION})`;
  }
  if (!isNonNegativeInteger(value.generation) || value.generation < 1)
    return 'generation is not a positive integer';
  for (const key of ['index', 'metadata'] as const) {
    const entry = value[key];
    if (!isRecord(entry)) return `${key} entry is missing`;
    if (typeof entry.file !== 'string' || !OWNED_FILE_PATTERN.test(entry.file))
      return `${key} file name is invalid`;
    if (!isNonNegativeInteger(entry.sizeBytes)) return `${key} sizeBytes is invalid`;
    if (typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256))
      return `${key} sha256 is invalid`;
  }
  return null;
}

function describeMetadataProblem(value: unknown, generation: number): string | null {
  if (!isRecord(value)) return 'it is not a JSON object';
  if (value.formatVersion !== FORMAT_VERSION)
    return `format version ${String(value.formatVersion)} is not supported`;
  if (value.generation !== generation)
    return `generation ${String(value.generation)} differs from the manifest (${generation})`;
  if (typeof value.savedAt !== 'string' || Number.isNaN(Date.parse(value.savedAt)))
    return 'savedAt is not a date';
  if (typeof value.modelId !== 'string' || value.modelId.length === 0) return 'modelId is missing';
  if (value.datasetId !== undefined && typeof value.datasetId !== 'string')
    return 'datasetId is not a string';
  for (const key of ['dim', 'M', 'efConstruction'] as const) {
    if (!isNonNegativeInteger(value[key]) || value[key] < 1)
      return `${key} is not a positive integer`;
  }
  if (!isNonNegativeInteger(value.lastSeq)) return 'lastSeq is not a non-negative integer';

  const counts = value.counts;
  if (!isRecord(counts)) return 'counts are missing';
  for (const key of ['faces', 'visitors', 'deleted', 'capacity'] as const) {
    if (!isNonNegativeInteger(counts[key])) return `counts.${key} is not a non-negative integer`;
  }

  const faces = value.faces;
  if (!Array.isArray(faces)) return 'faces is not an array';
  for (const entry of faces as unknown[]) {
    if (!Array.isArray(entry) || entry.length !== 2 || !isNonNegativeInteger(entry[0]))
      return 'a faces entry is invalid';
    if (typeof entry[1] !== 'string' || entry[1].length === 0)
      return 'a faces entry has no visitor id';
  }
  if (faces.length !== counts.faces)
    return `faces has ${faces.length} entries but counts.faces is ${String(counts.faces)}`;

  const deleted = value.deletedFaceIds;
  if (!Array.isArray(deleted) || !deleted.every(isNonNegativeInteger))
    return 'deletedFaceIds is not a list of face ids';
  if (deleted.length !== counts.deleted) {
    return `deletedFaceIds has ${deleted.length} entries but counts.deleted is ${String(counts.deleted)}`;
  }
  return null;
}

function compareDigest(
  path: string,
  expected: Omit<FileDigest, 'file'>,
  actual: Omit<FileDigest, 'file'>,
): string | null {
  if (actual.sizeBytes !== expected.sizeBytes) {
    return `file ${path} has ${actual.sizeBytes} bytes, but the manifest records ${expected.sizeBytes} (truncated or overwritten)`;
  }
  if (actual.sha256 !== expected.sha256)
    return `file ${path} does not match the SHA-256 recorded in the manifest`;
  return null;
}

async function digestFile(path: string): Promise<Omit<FileDigest, 'file'>> {
  const hash = createHash('sha256');
  let sizeBytes = 0;
  for await (const chunk of createReadStream(path)) {
    const bytes = chunk as Buffer;
    hash.update(bytes);
    sizeBytes += bytes.length;
  }
  return { sizeBytes, sha256: hash.digest('hex') };
}

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function writeFileDurably(path: string, bytes: Buffer): Promise<void> {
  const handle = await open(path, 'wx');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes the renames in `dir` durable; without it a power loss may undo them (POSIX fsync on a directory). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function removeStaleFiles(
  dir: string,
  keep: ReadonlySet<string>,
): Promise<Pick<SaveResult, 'removedFiles' | 'cleanupFailures'>> {
  const removedFiles: string[] = [];
  const cleanupFailures: SaveResult['cleanupFailures'] = [];
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    return { removedFiles, cleanupFailures: [{ file: dir, message: errorMessage(error) }] };
  }

  for (const file of entries) {
    if (keep.has(file) || !OWNED_FILE_PATTERN.test(file)) continue;
    try {
      await rm(join(dir, file), { force: true });
      removedFiles.push(file);
    } catch (error) {
      cleanupFailures.push({ file, message: errorMessage(error) });
    }
  }
  return { removedFiles, cleanupFailures };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && 'code' in error;
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
