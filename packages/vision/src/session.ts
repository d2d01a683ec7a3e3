import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

import { FaceGateError } from '@facegate/errors';
import * as ort from 'onnxruntime-node';

import {
  type Dimension,
  type ModelEntry,
  type TensorContract,
  readCalibration,
} from './manifest.js';
import { ModelGraphError } from './onnx-graph.js';
import { quantizeModel } from './quantize.js';

export interface SessionOptions {
  modelsDir: string;
  /** Intra-op threads for this session; 1 when several workers share the cores. */
  threads: number;
  /**
   * Whether intra-op threads spin between operators during a run (default
   * false). With 2 threads on 2 cores, spinning made YuNet and MobileFaceNet
   * about 1.5 times faster than blocking, which wakes a thread for every
   * operator, for 20 % more CPU. When other sessions want the cores, it only
   * burns them: with every worker thread busy, it doubled the CPU per image.
   */
  spinning?: boolean;
}

/** A change that the loader applies to a verified model's graph before creating its session. */
export interface GraphRewrite {
  apply(modelBytes: Uint8Array): Uint8Array;
  /** The inputs of the rewritten graph, checked in place of the manifest's contracts. */
  inputs(manifestInputs: TensorContract[]): TensorContract[];
}

export interface LoadedModel {
  entry: ModelEntry;
  session: ort.InferenceSession;
  /** Input and output names as found in the file, in manifest order. */
  inputNames: string[];
  outputNames: string[];
  sha256: string;
  /** Bits of the int8 weights when the model was quantized on loading (int8WeightBits). */
  weightBits?: 7 | 8;
}

function formatShape(shape: readonly Dimension[]): string {
  return `[${shape.join(',')}]`;
}

function dimensionMatches(expected: Dimension, actual: Dimension | undefined): boolean {
  if (typeof expected === 'string') return true;
  return actual === expected;
}

/** Returns the problems found when comparing a tensor of the file with its manifest contract. */
function compareTensor(
  kind: 'input' | 'output',
  expected: TensorContract,
  actual: ort.InferenceSession.ValueMetadata | undefined,
): string[] {
  if (!actual) return [`${kind} '${expected.name}' is missing`];
  if (!actual.isTensor) return [`${kind} '${actual.name}' is not a tensor`];
  const problems: string[] = [];
  if (actual.type !== expected.type) {
    problems.push(`${kind} '${actual.name}' has type ${actual.type}, expected ${expected.type}`);
  }
  const shape = actual.shape;
  const sameRank = shape.length === expected.shape.length;
  if (!sameRank || !expected.shape.every((dim, i) => dimensionMatches(dim, shape[i]))) {
    problems.push(
      `${kind} '${actual.name}' has shape ${formatShape(shape)}, expected ${formatShape(expected.shape)}`,
    );
  }
  return problems;
}

function resolveTensors(
  kind: 'input' | 'output',
  entry: ModelEntry,
  contracts: TensorContract[],
  metadata: readonly ort.InferenceSession.ValueMetadata[],
  problems: string[],
): string[] {
  if (entry.namesVerified === false) {
    // Names unknown: take the tensors by position, but their count and shapes must still match.
    if (metadata.length !== contracts.length) {
      problems.push(`the file has ${metadata.length} ${kind}s, expected ${contracts.length}`);
    }
    contracts.forEach((contract, i) =>
      problems.push(...compareTensor(kind, contract, metadata[i])),
    );
    return metadata.map((value) => value.name);
  }
  for (const contract of contracts) {
    const actual = metadata.find((value) => value.name === contract.name);
    problems.push(...compareTensor(kind, contract, actual));
  }
  return contracts.map((contract) => contract.name);
}

/**
 * Loads one model with onnxruntime-node after checking its bytes against the
 * manifest (size and sha256) and its tensors against the manifest contract.
 * A missing file is MODEL_UNAVAILABLE; any difference is MODEL_MISMATCH, so a
 * wrong or truncated file never produces features.
 */
export async function loadModel(
  entry: ModelEntry,
  options: SessionOptions,
  rewrite?: GraphRewrite,
): Promise<LoadedModel> {
  const path = join(options.modelsDir, entry.file);
  if (!existsSync(path)) {
    throw new FaceGateError(
      'MODEL_UNAVAILABLE',
      `model file ${path} is missing; run 'npm run setup' to fetch it (expected sha256 ${entry.sha256})`,
    );
  }

  const bytes = await readFile(path);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  if (bytes.length !== entry.bytes || sha256 !== entry.sha256) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `model file ${path} has ${bytes.length} bytes and sha256 ${sha256}; expected ${entry.bytes} bytes ` +
        `and sha256 ${entry.sha256}. Delete it and run 'npm run setup' to fetch it again.`,
    );
  }

  const weightBits = entry.quantization ? int8WeightBits() : undefined;
  let modelBytes = weightBits ? quantizeForSession(entry, bytes, weightBits) : bytes;
  if (rewrite) {
    try {
      modelBytes = rewrite.apply(modelBytes);
    } catch (error) {
      if (!(error instanceof ModelGraphError)) throw error;
      throw new FaceGateError(
        'MODEL_MISMATCH',
        `model file ${path} cannot be prepared for '${entry.name}': ${error.message}`,
        { cause: error },
      );
    }
  }

  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelBytes, {
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      extra: {
        session:
          options.spinning === true
            ? // Spin during a run, and stop when it returns: else the pool's threads spin on for
              // tens of milliseconds and slow the other session and the next decode.
              { 'intra_op.allow_spinning': '1', force_spinning_stop: '1' }
            : { 'intra_op.allow_spinning': '0' },
      },
    });
  } catch (error) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `model file ${path} cannot be loaded: ${String(error)}`,
      {
        cause: error,
      },
    );
  }

  const problems: string[] = [];
  const inputs = rewrite ? rewrite.inputs(entry.inputs) : entry.inputs;
  const inputNames = resolveTensors('input', entry, inputs, session.inputMetadata, problems);
  const outputNames = resolveTensors(
    'output',
    entry,
    entry.outputs,
    session.outputMetadata,
    problems,
  );
  if (problems.length > 0) {
    await session.release();
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `model file ${path} does not match the contract of '${entry.name}': ${problems.join('; ')}`,
    );
  }
  return { entry, session, inputNames, outputNames, sha256, ...(weightBits ? { weightBits } : {}) };
}

/**
 * Returns the bits for the int8 weights of a quantized model on this CPU: 8 where
 * onnxruntime's uint8-by-int8 products cannot saturate (ARM, or x86 with AVX512-VNNI or
 * AVX-VNNI), else 7. `cpuFlags` is the flags line of /proc/cpuinfo, null where that cannot
 * be read, which counts as no VNNI.
 *
 * NOTE: 7-bit weights were measured for accuracy only, on a CPU with VNNI. In a 10-fold run
 * over the LFW pairs they gave 98.82 %, against 99.00 % with 8 bits and 99.03 % in float.
 * Their speed on a CPU without VNNI is not measured.
 */
export function int8WeightBits(
  arch: string = process.arch,
  cpuFlags: string | null = readCpuFlags(),
): 7 | 8 {
  if (arch !== 'x64' && arch !== 'ia32') return 8;
  return cpuFlags !== null && /(^|\s)(avx512_vnni|avx_vnni)(\s|$)/.test(cpuFlags) ? 8 : 7;
}

function readCpuFlags(): string | null {
  try {
    return /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

function quantizeForSession(entry: ModelEntry, bytes: Uint8Array, weightBits: 7 | 8): Uint8Array {
  const calibration = readCalibration(entry);
  try {
    return quantizeModel(bytes, calibration.ranges, { weightBits });
  } catch (error) {
    if (!(error instanceof ModelGraphError)) throw error;
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `model '${entry.name}' cannot be quantized: ${error.message}; run 'npm run calibrate' to measure its ranges again`,
      { cause: error },
    );
  }
}

/** Checks the dims of an output tensor after a run; a mismatch is a bug or a wrong file. */
export function expectDims(
  model: LoadedModel,
  name: string,
  tensor: ort.Tensor | undefined,
  expected: readonly number[],
): Float32Array {
  if (!tensor)
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `model '${model.entry.name}' returned no output '${name}'`,
    );
  const dims = tensor.dims;
  if (dims.length !== expected.length || dims.some((dim, i) => dim !== expected[i])) {
    throw new FaceGateError(
      'MODEL_MISMATCH',
      `model '${model.entry.name}' output '${name}' has shape ${formatShape(dims)}, expected ${formatShape(expected)}`,
    );
  }
  return tensor.data as Float32Array;
}
