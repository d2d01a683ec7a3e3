#!/usr/bin/env node
// Fetches the model files listed in models/manifest.json into MODELS_DIR.
// Each file is copied from a local mirror (MODELS_MIRROR, default ../shared/models
// beside the repository when that folder exists) or downloaded from its official
// URL, checked against the manifest's byte count and sha256, then renamed into
// place, so a failed or interrupted fetch never leaves a partial file behind.
//
// Usage: node models/fetch.mjs [--all | --only NAME[,NAME]] [--quiet]
// Without --all or --only it fetches the detector and embedder selected by
// FACE_DETECTOR and FACE_EMBEDDER (defaults: yunet_2026may and mobilefacenet_int8).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = dirname(here);

/** Embedder names accepted by FACE_EMBEDDER, mapped to manifest entries. */
export const EMBEDDER_MODELS = {
  mobilefacenet: 'mobilefacenet_foamliu_128d',
  sface: 'sface_2021dec',
  sface_int8: 'sface_2021dec_int8',
  mobilefacenet_int8: 'mobilefacenet_foamliu_128d_int8',
};
/** Detector names accepted by FACE_DETECTOR, mapped to manifest entries. */
export const DETECTOR_MODELS = {
  yunet_2026may: 'yunet_2026may',
  yunet_2023mar: 'yunet_2023mar',
};

export class ModelFetchError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ModelFetchError';
  }
}

export function defaultModelsDir(env = process.env) {
  return resolve(env.MODELS_DIR || join(repoRoot, 'models', 'files'));
}

export function defaultMirror(env = process.env) {
  if (env.MODELS_MIRROR) return resolve(env.MODELS_MIRROR);
  const shared = resolve(repoRoot, '..', 'shared', 'models');
  return existsSync(shared) ? shared : undefined;
}

export async function readManifest() {
  const { readFile } = await import('node:fs/promises');
  return JSON.parse(await readFile(join(here, 'manifest.json'), 'utf8'));
}

async function sha256OfFile(path) {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Returns undefined when the file matches, else a description of the difference. */
async function describeMismatch(path, entry) {
  const { size } = await stat(path);
  if (size !== entry.bytes) return `it has ${size} bytes, expected ${entry.bytes}`;
  const digest = await sha256OfFile(path);
  if (digest !== entry.sha256) return `its sha256 is ${digest}, expected ${entry.sha256}`;
  return undefined;
}

async function fsyncAndClose(path) {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function copyFromMirror(source, temporary) {
  await pipeline(createReadStream(source), createWriteStream(temporary, { flags: 'wx' }));
}

async function download(url, temporary, timeoutMs) {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'follow' });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status} from ${url}`);
  await pipeline(Readable.fromWeb(response.body), createWriteStream(temporary, { flags: 'wx' }));
}

/**
 * Makes sure `entry.file` is present and valid in `modelsDir`. Returns how it got there:
 * 'present', 'mirror' or 'download'. Throws ModelFetchError naming the file, the
 * expected hash and every place it looked.
 */
export async function fetchModel(entry, { modelsDir, mirror, downloadTimeoutMs = 600_000 }) {
  const target = join(modelsDir, entry.file);
  if (existsSync(target) && (await describeMismatch(target, entry)) === undefined) return 'present';

  await mkdir(modelsDir, { recursive: true });
  const temporary = `${target}.${process.pid}.tmp`;
  const attempts = [];

  const sources = [];
  if (mirror) sources.push({ kind: 'mirror', where: join(mirror, entry.file) });
  if (entry.url) sources.push({ kind: 'download', where: entry.url });

  for (const source of sources) {
    await rm(temporary, { force: true });
    try {
      if (source.kind === 'mirror') {
        if (!existsSync(source.where)) {
          attempts.push(`not found in mirror ${source.where}`);
          continue;
        }
        await copyFromMirror(source.where, temporary);
      } else {
        await download(source.where, temporary, downloadTimeoutMs);
      }
      const mismatch = await describeMismatch(temporary, entry);
      if (mismatch) {
        attempts.push(`${source.kind} ${source.where}: ${mismatch}`);
        continue;
      }
      await fsyncAndClose(temporary);
      await rename(temporary, target);
      return source.kind;
    } catch (error) {
      const reason =
        error instanceof Error ? (error.cause?.message ?? error.message) : String(error);
      attempts.push(`${source.kind} ${source.where} failed: ${reason}`);
    } finally {
      await rm(temporary, { force: true });
    }
  }

  throw new ModelFetchError(
    `model file ${entry.file} (${entry.name}) could not be obtained; expected ${entry.bytes} bytes ` +
      `with sha256 ${entry.sha256}. Tried: ${attempts.join('; ') || 'no mirror and no URL'}.`,
  );
}

function selectedModelNames(env) {
  const embedder = env.FACE_EMBEDDER || 'mobilefacenet_int8';
  const detector = env.FACE_DETECTOR || 'yunet_2026may';
  const names = [];
  if (!(embedder in EMBEDDER_MODELS)) {
    throw new ModelFetchError(
      `FACE_EMBEDDER='${embedder}' is not valid; choose one of ${Object.keys(EMBEDDER_MODELS).join(', ')}`,
    );
  }
  if (!(detector in DETECTOR_MODELS)) {
    throw new ModelFetchError(
      `FACE_DETECTOR='${detector}' is not valid; choose one of ${Object.keys(DETECTOR_MODELS).join(', ')}`,
    );
  }
  names.push(DETECTOR_MODELS[detector], EMBEDDER_MODELS[embedder]);
  return names;
}

function parseArgs(argv) {
  const options = { all: false, only: undefined, quiet: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--all') options.all = true;
    else if (arg === '--quiet') options.quiet = true;
    else if (arg === '--only') options.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else
      throw new ModelFetchError(
        `unknown argument '${arg}'; usage: fetch.mjs [--all | --only NAME[,NAME]] [--quiet]`,
      );
  }
  return options;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const manifest = await readManifest();
  const modelsDir = defaultModelsDir();
  const mirror = defaultMirror();

  const names = options.all
    ? manifest.models.map((m) => m.name)
    : (options.only ?? selectedModelNames(process.env));
  const failures = [];
  for (const name of names) {
    const entry = manifest.models.find((m) => m.name === name);
    if (!entry) {
      failures.push(`'${name}' is not in models/manifest.json`);
      continue;
    }
    try {
      const how = await fetchModel(entry, { modelsDir, mirror });
      if (!options.quiet || how !== 'present')
        console.log(
          `models: ${entry.file} ${how === 'present' ? 'already present and verified' : `fetched from ${how}`}`,
        );
    } catch (error) {
      failures.push(error.message);
    }
  }

  if (failures.length > 0) {
    for (const failure of failures) console.error(`models: ${failure}`);
    const embedder = process.env.FACE_EMBEDDER || 'mobilefacenet_int8';
    if (embedder.startsWith('sface') && !options.all && !options.only) {
      console.error(
        'models: the SFace weights cannot be downloaded without internet access. Put the file in ' +
          'MODELS_MIRROR, or set FACE_EMBEDDER=mobilefacenet to use MobileFaceNet instead.',
      );
    }
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(`models: ${error.message}`);
    process.exit(1);
  });
}
