import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { FacePipeline } from '@facegate/vision';
import { faceNearest } from '@facegate/vision';

/** One LFW View 2 pair: two photo paths relative to lfw/, and whether they show the same person. */
export interface LfwPair {
  fold: number;
  same: boolean;
  a: string;
  b: string;
}

export function lfwImagePath(name: string, index: number): string {
  return join(name, `${name}_${String(index).padStart(4, '0')}.jpg`);
}

/** Parses pairs.txt: a header "folds pairsPerSide", then per fold the same and the different pairs. */
export function parsePairs(text: string): LfwPair[] {
  const lines = text.trim().split('\n');
  const [folds, perSide] = lines[0]!.trim().split(/\s+/).map(Number) as [number, number];
  const pairs: LfwPair[] = [];
  let line = 1;
  for (let fold = 0; fold < folds; fold += 1) {
    for (let i = 0; i < 2 * perSide; i += 1) {
      const parts = lines[line]!.trim().split(/\s+/);
      line += 1;
      if (parts.length === 3) {
        pairs.push({
          fold,
          same: true,
          a: lfwImagePath(parts[0]!, Number(parts[1])),
          b: lfwImagePath(parts[0]!, Number(parts[2])),
        });
      } else if (parts.length === 4) {
        pairs.push({
          fold,
          same: false,
          a: lfwImagePath(parts[0]!, Number(parts[1])),
          b: lfwImagePath(parts[2]!, Number(parts[3])),
        });
      } else {
        throw new Error(
          `pairs.txt line ${line}: expected 3 or 4 fields, got '${lines[line - 1]!}'`,
        );
      }
    }
  }
  return pairs;
}

export interface LfwEmbedding {
  vector: Float32Array | undefined;
  /** How the face was found: at the default score, at the fallback score, or not at all. */
  found: 'default' | 'fallback' | 'none';
}

/** Detection score used for a second try when the default finds no face in an LFW photo. */
export const FALLBACK_MIN_SCORE = 0.3;

/**
 * Embeds LFW photos through the whole pipeline: detect on the 250x250 photo,
 * take the face nearest the centre, align, embed. Runs one pipeline per
 * entry of `pipelines` concurrently.
 */
export async function embedLfwImages(
  pipelines: FacePipeline[],
  lfwDir: string,
  paths: readonly string[],
  onProgress?: (done: number) => void,
): Promise<Map<string, LfwEmbedding>> {
  const results = new Map<string, LfwEmbedding>();
  let next = 0;
  let done = 0;

  async function embedOne(pipeline: FacePipeline, path: string): Promise<LfwEmbedding> {
    const bytes = await readFile(join(lfwDir, path));
    const image = await pipeline.decode(bytes);
    const centreX = image.width / 2;
    const centreY = image.height / 2;
    for (const [found, minScore] of [
      ['default', pipeline.config.detectionMinScore],
      ['fallback', FALLBACK_MIN_SCORE],
    ] as const) {
      const faces = await pipeline.detector.detect(image, pipeline.detectOptions({ minScore }));
      const face = faceNearest(faces, centreX, centreY);
      if (face) {
        const { embeddings } = await pipeline.embedFaces(image, [face]);
        return { vector: embeddings[0]!.vector, found };
      }
    }
    return { vector: undefined, found: 'none' };
  }

  async function worker(pipeline: FacePipeline): Promise<void> {
    while (next < paths.length) {
      const path = paths[next]!;
      next += 1;
      results.set(path, await embedOne(pipeline, path));
      done += 1;
      onProgress?.(done);
    }
  }

  await Promise.all(pipelines.map((pipeline) => worker(pipeline)));
  return results;
}

/** Similarity of each pair; a photo without a face scores -1 (never a match). */
export function pairSimilarities(
  pairs: readonly LfwPair[],
  embeddings: Map<string, LfwEmbedding>,
): number[] {
  return pairs.map((pair) => {
    const a = embeddings.get(pair.a)?.vector;
    const b = embeddings.get(pair.b)?.vector;
    if (!a || !b) return -1;
    let dot = 0;
    for (let i = 0; i < a.length; i += 1) dot += a[i]! * b[i]!;
    return dot;
  });
}

export function accuracyAt(
  pairs: readonly LfwPair[],
  scores: readonly number[],
  threshold: number,
): number {
  let correct = 0;
  pairs.forEach((pair, i) => {
    if (scores[i]! >= threshold === pair.same) correct += 1;
  });
  return pairs.length === 0 ? 0 : correct / pairs.length;
}

/** The threshold with the best accuracy, searched over the midpoints between sorted scores. */
export function bestThreshold(
  pairs: readonly LfwPair[],
  scores: readonly number[],
): { threshold: number; accuracy: number } {
  const order = scores
    .map((score, i) => ({ score, same: pairs[i]!.same }))
    .sort((a, b) => a.score - b.score);
  // Start with every pair predicted "same" (threshold below all scores), then move the threshold up.
  let correct = order.filter((entry) => entry.same).length;
  let best = { threshold: order[0] ? order[0].score - 1e-6 : 0, correct };
  for (let i = 0; i < order.length; i += 1) {
    correct += order[i]!.same ? -1 : 1;
    const nextScore = order[i + 1]?.score ?? order[i]!.score + 1e-3;
    if (correct > best.correct && nextScore > order[i]!.score) {
      best = { threshold: (order[i]!.score + nextScore) / 2, correct };
    }
  }
  return {
    threshold: best.threshold,
    accuracy: order.length === 0 ? 0 : best.correct / order.length,
  };
}

export interface FoldResult {
  fold: number;
  threshold: number;
  accuracy: number;
}

/** Standard 10-fold protocol: the threshold is chosen on nine folds and tested on the tenth. */
export function tenFold(pairs: readonly LfwPair[], scores: readonly number[]): FoldResult[] {
  const folds = [...new Set(pairs.map((pair) => pair.fold))].sort((a, b) => a - b);
  return folds.map((fold) => {
    const trainIdx = pairs.flatMap((pair, i) => (pair.fold === fold ? [] : [i]));
    const testIdx = pairs.flatMap((pair, i) => (pair.fold === fold ? [i] : []));
    const { threshold } = bestThreshold(
      trainIdx.map((i) => pairs[i]!),
      trainIdx.map((i) => scores[i]!),
    );
    const accuracy = accuracyAt(
      testIdx.map((i) => pairs[i]!),
      testIdx.map((i) => scores[i]!),
      threshold,
    );
    return { fold, threshold, accuracy };
  });
}

/** True accept rate at the threshold where at most `far` of the different-person pairs are accepted. */
export function tarAtFar(
  pairs: readonly LfwPair[],
  scores: readonly number[],
  far: number,
): { tar: number; threshold: number } {
  const negatives = scores.filter((_, i) => !pairs[i]!.same).sort((a, b) => b - a);
  const positives = scores.filter((_, i) => pairs[i]!.same);
  const allowed = Math.floor(far * negatives.length);
  // Accept strictly above the (allowed + 1)-th highest impostor score.
  const threshold = negatives[allowed] ?? -1;
  const accepted = positives.filter((score) => score > threshold).length;
  return { tar: positives.length === 0 ? 0 : accepted / positives.length, threshold };
}
