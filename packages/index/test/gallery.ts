/**
 * Seeded synthetic face features for the tests. Each visitor has a random unit
 * centre, and each face is that centre plus Gaussian noise, normalised. Faces of one
 * visitor then cluster (cosine about 0.75 to each other) while different visitors
 * are nearly orthogonal, roughly as the embeddings of a face model behave.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { FaceEntry } from '../src/index.js';

export const DIM = 128;
export const MODEL_ID = 'test-model-128d';

/** Noise norm relative to the unit centre; 0.6 gives a face-to-centre cosine near 0.86. */
const FACE_NOISE = 0.6;

/** mulberry32: a small deterministic PRNG returning floats in [0, 1). */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sample by the Box-Muller transform. */
function gaussian(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export function normalise(vector: number[]): number[] {
  const norm = Math.hypot(...vector);
  return vector.map((value) => value / norm);
}

export function randomUnitVector(random: () => number, dim = DIM): number[] {
  return normalise(Array.from({ length: dim }, () => gaussian(random)));
}

/** Returns a face of the visitor with this centre: the centre plus noise of norm about `noise`, normalised. */
export function faceNear(centre: number[], random: () => number, noise = FACE_NOISE): number[] {
  const scale = noise / Math.sqrt(centre.length);
  return normalise(centre.map((value) => value + gaussian(random) * scale));
}

export interface Gallery {
  centres: Map<string, number[]>;
  faces: FaceEntry[];
}

/** `visitors` visitors with `facesPerVisitor` faces each; face ids start at 1. */
export function createGallery(seed: number, visitors: number, facesPerVisitor: number): Gallery {
  const random = createRandom(seed);
  const centres = new Map<string, number[]>();
  const faces: FaceEntry[] = [];
  let faceId = 1;
  for (let v = 0; v < visitors; v += 1) {
    const visitorId = visitorUuid(v);
    const centre = randomUnitVector(random);
    centres.set(visitorId, centre);
    for (let f = 0; f < facesPerVisitor; f += 1) {
      faces.push({ faceId, visitorId, vector: faceNear(centre, random) });
      faceId += 1;
    }
  }
  return { centres, faces };
}

/** Returns a deterministic uuid-shaped visitor id. */
export function visitorUuid(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
}

export async function withTemporaryDirectory<T>(run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'facegate-index-test-'));
  try {
    return await run(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
