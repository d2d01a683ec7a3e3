import { readFile } from 'node:fs/promises';

import type { Config } from '@facegate/config';
import { FaceGateError, namingInput } from '@facegate/errors';
import {
  FacePipeline,
  cosineSimilarity,
  defaultVerifyThreshold,
  largestFace,
} from '@facegate/vision';

import { userPath } from './paths.js';

export interface CommandOutput {
  stdout: unknown;
}

async function readImage(path: string): Promise<Buffer> {
  try {
    return await readFile(userPath(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new FaceGateError(
      'INVALID_REQUEST',
      `cannot read image file '${path}' (${code ?? String(error)})`,
    );
  }
}

function parseNumberOption(
  name: string,
  value: string | undefined,
  min: number,
  max: number,
): number {
  const parsed = Number(value);
  if (
    value === undefined ||
    value === '' ||
    !Number.isFinite(parsed) ||
    parsed < min ||
    parsed > max
  ) {
    throw new FaceGateError(
      'INVALID_REQUEST',
      `--${name} must be a number from ${min} to ${max}, got '${value ?? ''}'`,
    );
  }
  return parsed;
}

export interface ParsedArgs {
  positional: string[];
  options: Map<string, string>;
}

/** Splits `--name value` options from positional arguments; unknown options are rejected. */
export function parseArgs(args: readonly string[], known: readonly string[]): ParsedArgs {
  const positional: string[] = [];
  const options = new Map<string, string>();
  for (let i = 0; i < args.length; i += 1) {
    const arg = args[i]!;
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.slice(2).split('=', 2) as [string, string | undefined];
    if (!known.includes(name)) {
      throw new FaceGateError(
        'INVALID_REQUEST',
        `unknown option --${name}; known: ${known.map((k) => `--${k}`).join(', ')}`,
      );
    }
    const value = inline ?? args[i + 1];
    if (inline === undefined) i += 1;
    options.set(name, value ?? '');
  }
  return { positional, options };
}

export async function detectCommand(config: Config, args: readonly string[]): Promise<unknown> {
  const { positional, options } = parseArgs(args, ['min-score', 'limit']);
  if (positional.length !== 1)
    throw new FaceGateError(
      'INVALID_REQUEST',
      'usage: fr detect <image> [--min-score S] [--limit N]',
    );

  const overrides: { minScore?: number; maxFaces?: number } = {};
  if (options.has('min-score'))
    overrides.minScore = parseNumberOption('min-score', options.get('min-score'), 0.05, 1);
  if (options.has('limit'))
    overrides.maxFaces = parseNumberOption('limit', options.get('limit'), 1, 5000);

  const bytes = await readImage(positional[0]!);
  const pipeline = await FacePipeline.create(config);
  try {
    const result = await pipeline.detect(bytes, overrides);
    return { image: result.image, faces: result.faces };
  } finally {
    await pipeline.close();
  }
}

export async function verifyCommand(config: Config, args: readonly string[]): Promise<unknown> {
  const { positional, options } = parseArgs(args, ['threshold']);
  if (positional.length !== 2)
    throw new FaceGateError(
      'INVALID_REQUEST',
      'usage: fr verify <imageA> <imageB> [--threshold T]',
    );

  const [bytesA, bytesB] = await Promise.all(positional.map((path) => readImage(path)));
  const pipeline = await FacePipeline.create(config);
  try {
    const threshold = options.has('threshold')
      ? parseNumberOption('threshold', options.get('threshold'), -1, 1)
      : (config.verifyThreshold ?? defaultVerifyThreshold(pipeline.modelId));

    const vectors: Float32Array[] = [];
    for (const [index, bytes] of [bytesA!, bytesB!].entries()) {
      const analysis = await pipeline.analyze(bytes).catch((error: unknown) => {
        throw namingInput(error, `'${positional[index]!}'`);
      });
      const face = largestFace(analysis.faces);
      if (!face) {
        throw new FaceGateError('NO_FACE', `no face was found in '${positional[index]!}'`);
      }
      vectors.push(face.embedding.vector);
    }
    const similarity = cosineSimilarity(vectors[0]!, vectors[1]!);
    return {
      similarity: Math.round(similarity * 1e6) / 1e6,
      match: similarity >= threshold,
      threshold,
      modelId: pipeline.modelId,
    };
  } finally {
    await pipeline.close();
  }
}
