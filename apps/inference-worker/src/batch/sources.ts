/**
 * Enumerates a batch source into items, lazily and in order, so that a source of tens of
 * thousands of images is planned chunk by chunk with flat memory. Entries that can never
 * become a job (a malformed manifest row, an unreadable person folder) become items with
 * status 'failed', so the report lists them. Entries of a directory that are not images to
 * enrol become items with status 'ignored', and every ignored entry is counted.
 */
import { createReadStream, type Dirent } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

import {
  type BatchSource,
  type Database,
  type NewBatchItem,
  streamTableSourceRows,
} from '@facegate/db';
import { FaceGateError } from '@facegate/errors';

import { CsvParser, type CsvRecord } from './csv.js';
import { assertWithinRoots, fileError } from './files.js';

/** Extensions of the files a directory source takes as images; others are ignored. */
const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  '.jpg',
  '.jpeg',
  '.jpe',
  '.png',
  '.webp',
  '.gif',
  '.tif',
  '.tiff',
  '.bmp',
  '.avif',
  '.heic',
  '.heif',
]);

/** Counts entries of the source that were left out, for the batch record. */
export interface EnumerationCounters {
  ignored: number;
}

/**
 * Maximum number of ignored entries of one source stored as items, so that a folder full of
 * other files cannot fill the items table. Those beyond it are only counted.
 */
export const MAX_IGNORED_ITEMS = 10_000;

/** Yields the source's items in chunks of at most `chunkSize`. */
export async function* enumerateSource(
  db: Database,
  source: BatchSource,
  chunkSize: number,
  counters: EnumerationCounters,
  roots: readonly string[] = [],
  maxIgnoredItems = MAX_IGNORED_ITEMS,
): AsyncGenerator<NewBatchItem[], void, undefined> {
  if (source.type !== 'table') await assertWithinRoots(source.path, roots, source.type);
  switch (source.type) {
    case 'directory':
      yield* chunked(directoryItems(source.path, counters, maxIgnoredItems), chunkSize);
      return;
    case 'manifest':
      yield* chunked(manifestItems(source.path), chunkSize);
      return;
    case 'table':
      for await (const rows of streamTableSourceRows(db, source, chunkSize)) {
        const items: NewBatchItem[] = [];
        for (const row of rows) {
          if (row.id === null) counters.ignored += 1;
          else items.push(tableItem(source.imageEncoding, row.id, row.name, row.path));
        }
        yield items;
      }
      return;
  }
}

async function* chunked<T>(items: AsyncIterable<T>, size: number): AsyncGenerator<T[]> {
  let chunk: T[] = [];
  for await (const item of items) {
    chunk.push(item);
    if (chunk.length >= size) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk;
}

function failedItem(
  key: string,
  error: FaceGateError,
  externalId: string | null = null,
): NewBatchItem {
  return {
    key,
    externalId,
    name: null,
    locator: null,
    status: 'failed',
    code: error.code,
    reason: error.message,
  };
}

function byName(a: Dirent, b: Dirent): number {
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}

/**
 * Follows a symbolic link to tell a folder from a file. A link whose target is missing is
 * 'missing', and a socket, device or pipe is 'other'.
 */
async function entryKind(
  parent: string,
  entry: Dirent,
): Promise<'directory' | 'file' | 'missing' | 'other'> {
  if (entry.isDirectory()) return 'directory';
  if (entry.isFile()) return 'file';
  if (!entry.isSymbolicLink()) return 'other';
  try {
    const target = await stat(join(parent, entry.name));
    return target.isDirectory() ? 'directory' : target.isFile() ? 'file' : 'other';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'other';
  }
}

function hasImageExtension(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

interface Exclusion {
  code: string;
  reason: string;
}

const HIDDEN_ENTRY: Exclusion = { code: 'HIDDEN_ENTRY', reason: 'hidden file or folder' };

/** Returns the code and reason for ignoring an entry of the root folder, or null for a visitor. */
function reasonToIgnoreInRoot(
  name: string,
  kind: Awaited<ReturnType<typeof entryKind>>,
): Exclusion | null {
  if (name.startsWith('.')) return HIDDEN_ENTRY;
  if (kind === 'directory') return null;
  if (kind === 'missing') {
    return { code: 'BROKEN_LINK', reason: 'symbolic link to a missing file or folder' };
  }
  return {
    code: 'OUTSIDE_VISITOR_FOLDER',
    reason: 'not a folder: photos go in one folder per visitor',
  };
}

/** Returns the code and reason for ignoring an entry of a visitor folder, or null for a photo. */
function reasonToIgnore(
  name: string,
  kind: Awaited<ReturnType<typeof entryKind>>,
): Exclusion | null {
  if (name.startsWith('.')) return HIDDEN_ENTRY;
  if (kind === 'directory') {
    return { code: 'NESTED_FOLDER', reason: 'folder inside a visitor folder' };
  }
  if (kind === 'other') return { code: 'NOT_A_FILE', reason: 'neither a file nor a folder' };
  if (!hasImageExtension(name)) {
    return {
      code: 'NOT_AN_IMAGE',
      reason: `no image file extension (${[...IMAGE_EXTENSIONS].join(', ')})`,
    };
  }
  // A link to a missing file is enrolled like any photo and fails with NOT_FOUND, as a
  // manifest row naming a missing file does.
  return null;
}

/**
 * One folder per visitor (`<root>/<externalId>/<photo>`): the folder name is both the
 * visitor's externalId and name. Files directly in the root, hidden entries, nested
 * folders and files without an image extension are ignored: counted, and the first
 * `maxIgnoredItems` of them yielded as items with status 'ignored'.
 */
async function* directoryItems(
  root: string,
  counters: EnumerationCounters,
  maxIgnoredItems: number,
): AsyncGenerator<NewBatchItem> {
  let people: Dirent[];
  try {
    people = (await readdir(root, { withFileTypes: true })).sort(byName);
  } catch (error) {
    throw fileError(error, root, 'folder');
  }

  const ignore = (
    key: string,
    path: string,
    externalId: string | null,
    exclusion: Exclusion,
  ): NewBatchItem | null => {
    counters.ignored += 1;
    if (counters.ignored > maxIgnoredItems) return null;
    return { key, externalId, name: null, locator: path, status: 'ignored', ...exclusion };
  };

  for (const person of people) {
    const folder = join(root, person.name);
    const kind = await entryKind(root, person);
    const exclusion = reasonToIgnoreInRoot(person.name, kind);
    if (exclusion) {
      const item = ignore(
        kind === 'directory' ? `${person.name}/` : person.name,
        folder,
        null,
        exclusion,
      );
      if (item) yield item;
      continue;
    }
    let files: Dirent[];
    try {
      files = (await readdir(folder, { withFileTypes: true })).sort(byName);
    } catch (error) {
      const failure = fileError(error, folder, 'folder');
      if (failure.retryable) throw failure;
      yield failedItem(`${person.name}/`, failure, person.name);
      continue;
    }

    for (const file of files) {
      const path = join(folder, file.name);
      const fileKind = await entryKind(folder, file);
      const exclusion = reasonToIgnore(file.name, fileKind);
      if (exclusion) {
        const suffix = fileKind === 'directory' ? '/' : '';
        const item = ignore(`${person.name}/${file.name}${suffix}`, path, person.name, exclusion);
        if (item) yield item;
        continue;
      }
      yield {
        key: `${person.name}/${file.name}`,
        externalId: person.name,
        name: person.name,
        locator: path,
      };
    }
  }
}

interface ManifestRow {
  line: number;
  externalId: unknown;
  name: unknown;
  image: unknown;
}

/**
 * Reads a manifest: a CSV file whose header row names the columns externalId, name and
 * image (in any order, extra columns ignored), or JSON Lines of {externalId, name, image}.
 * The extension (.csv, .jsonl, .ndjson) decides the format, else the first character
 * ('{' means JSON Lines). Relative image paths resolve against the manifest's folder.
 */
async function* manifestItems(path: string): AsyncGenerator<NewBatchItem> {
  const folder = dirname(path);
  for await (const row of manifestRows(path)) {
    yield manifestItem(row, folder);
  }
}

async function* manifestRows(path: string): AsyncGenerator<ManifestRow | NewBatchItem> {
  const extension = extname(path).toLowerCase();
  let format: 'csv' | 'jsonl' | undefined =
    extension === '.csv'
      ? 'csv'
      : extension === '.jsonl' || extension === '.ndjson'
        ? 'jsonl'
        : undefined;

  try {
    format ??= (await firstText(path)).trimStart().startsWith('{') ? 'jsonl' : 'csv';
  } catch (error) {
    throw fileError(error, path, 'manifest');
  }

  const stream = createReadStream(path, { encoding: 'utf8' });
  try {
    if (format === 'jsonl') yield* jsonLinesRows(stream);
    else yield* csvRows(stream, path);
  } catch (error) {
    if (error instanceof FaceGateError) throw error;
    throw fileError(error, path, 'manifest');
  } finally {
    stream.destroy();
  }
}

/** Reads the first bytes of a file, enough to tell JSON Lines from CSV. */
async function firstText(path: string): Promise<string> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(256);
    const { bytesRead } = await file.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
}

async function* jsonLinesRows(
  stream: NodeJS.ReadableStream,
): AsyncGenerator<ManifestRow | NewBatchItem> {
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let line = 0;
  for await (const text of lines) {
    line += 1;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      yield failedItem(
        `line ${line}`,
        new FaceGateError('INVALID_REQUEST', `line ${line} is not valid JSON`),
      );
      continue;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      yield failedItem(
        `line ${line}`,
        new FaceGateError('INVALID_REQUEST', `line ${line} is not a JSON object`),
      );
      continue;
    }
    const record = value as Record<string, unknown>;
    yield { line, externalId: record.externalId, name: record.name, image: record.image };
  }
}

const MANIFEST_COLUMNS = ['externalId', 'name', 'image'] as const;

async function* csvRows(
  stream: NodeJS.ReadableStream,
  path: string,
): AsyncGenerator<ManifestRow | NewBatchItem> {
  const parser = new CsvParser();
  let columns: Map<string, number> | undefined;

  function* rows(records: CsvRecord[]): Generator<ManifestRow> {
    for (const record of records) {
      if (!columns) {
        columns = csvHeader(record, path);
        continue;
      }
      const field = (name: string): string | undefined => record.fields[columns!.get(name)!];
      yield {
        line: record.line,
        externalId: field('externalId'),
        name: field('name'),
        image: field('image'),
      };
    }
  }

  for await (const chunk of stream) yield* rows(parser.push(chunk as string));
  let last: CsvRecord[];
  try {
    last = parser.end();
  } catch (error) {
    throw new FaceGateError('INVALID_REQUEST', `manifest ${path}: ${(error as Error).message}`);
  }
  yield* rows(last);
  if (!columns) throw new FaceGateError('INVALID_REQUEST', `manifest ${path} has no header row`);
}

function csvHeader(record: CsvRecord, path: string): Map<string, number> {
  const names = record.fields.map(
    (name, index) => [name.trim().replace(/^\uFEFF/, ''), index] as const,
  );
  const columns = new Map(names);
  const missing = MANIFEST_COLUMNS.filter((name) => !columns.has(name));
  if (missing.length > 0) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      // The header's text is left out: a path to a file that is not a manifest would
      // otherwise show its first line to the caller.
      `manifest ${path} has no column ${missing.join(', ')} in its header row; ` +
        'expected a header row with externalId, name and image',
    );
  }
  return columns;
}

function manifestItem(row: ManifestRow | NewBatchItem, folder: string): NewBatchItem {
  if ('key' in row) return row;
  const key = `line ${row.line}`;
  const externalId = typeof row.externalId === 'string' ? row.externalId.trim() : '';
  const image = typeof row.image === 'string' ? row.image.trim() : '';
  if (externalId === '' || image === '') {
    const missing = externalId === '' ? 'externalId' : 'image';
    return failedItem(key, new FaceGateError('INVALID_REQUEST', `${key} has no ${missing}`));
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(image)) {
    return failedItem(
      key,
      new FaceGateError(
        'INVALID_REQUEST',
        `${key}: image ${image} is a URL; only file paths are read`,
      ),
      externalId,
    );
  }
  const name =
    typeof row.name === 'string' && row.name.trim() !== '' ? row.name.trim() : externalId;
  return {
    key: `${externalId}/${image}`,
    externalId,
    name,
    locator: isAbsolute(image) ? image : resolve(folder, image),
  };
}

/**
 * Builds the item of a table row. The id column's value is its key and the visitor's
 * externalId, and an empty name falls back to the id.
 */
function tableItem(
  encoding: 'bytea' | 'base64' | 'path',
  id: string,
  name: string | null,
  path: string | null,
): NewBatchItem {
  const visitorName = name !== null && name.trim() !== '' ? name.trim() : id;
  if (encoding !== 'path') return { key: id, externalId: id, name: visitorName, locator: id };
  if (path === null || path.trim() === '') {
    return failedItem(id, new FaceGateError('IMAGE_EMPTY', `row ${id} has no image path`), id);
  }
  if (!isAbsolute(path)) {
    return failedItem(
      id,
      new FaceGateError('INVALID_REQUEST', `row ${id}: image path ${path} is not absolute`),
      id,
    );
  }
  return { key: id, externalId: id, name: visitorName, locator: path };
}
