/**
 * Exact (brute force) nearest-neighbour search by inner product. FaceIndex uses
 * it below its exact-search threshold, and a recall benchmark can use it as the
 * ground truth for the HNSW graph.
 */

/** The rows of an exact search, best first, with their inner products. */
export interface ExactTopK {
  /** Row numbers in the matrix, best first. */
  rows: number[];
  /** Inner product of each row with the query; equals cosine similarity for unit vectors. */
  scores: number[];
}

/**
 * Finds the `k` rows of `matrix` with the largest inner product with `query`.
 *
 * `matrix` stores `count` row-major vectors of `dim` floats each, from index 0;
 * anything after row `count - 1` is ignored. `k` is clamped to `count`, so the
 * result may be shorter than `k`. Equal scores are ordered by lower row first.
 * Throws a RangeError when the shapes do not fit, because that is a bug in the caller.
 */
export function exactTopK(
  matrix: Float32Array,
  count: number,
  dim: number,
  query: ArrayLike<number>,
  k: number,
): ExactTopK {
  if (!Number.isInteger(dim) || dim < 1)
    throw new RangeError(`dim is ${dim}; it must be a positive integer`);
  if (!Number.isInteger(count) || count < 0 || count * dim > matrix.length) {
    throw new RangeError(
      `count is ${count}, but the matrix contains ${matrix.length / dim} rows of ${dim} floats`,
    );
  }
  if (query.length !== dim)
    throw new RangeError(`query has ${query.length} dimensions, expected ${dim}`);
  if (!Number.isInteger(k) || k < 0)
    throw new RangeError(`k is ${k}; it must be a non-negative integer`);

  const limit = Math.min(k, count);
  const heap = new WorstFirstHeap(limit);
  for (let row = 0; row < count; row += 1) {
    const offset = row * dim;
    let score = 0;
    for (let i = 0; i < dim; i += 1) score += matrix[offset + i]! * query[i]!;
    heap.offer(row, score);
  }
  return heap.drainBestFirst();
}

/**
 * A bounded binary heap whose root is the worst kept candidate, so each row costs
 * O(log k) and the whole scan O(count log k).
 */
class WorstFirstHeap {
  private readonly rows: number[] = [];
  private readonly scores: number[] = [];

  constructor(private readonly capacity: number) {}

  offer(row: number, score: number): void {
    if (this.capacity === 0) return;
    if (this.rows.length < this.capacity) {
      this.rows.push(row);
      this.scores.push(score);
      this.siftUp(this.rows.length - 1);
      return;
    }
    if (!this.isWorse(0, row, score)) return;
    this.rows[0] = row;
    this.scores[0] = score;
    this.siftDown(0);
  }

  drainBestFirst(): ExactTopK {
    const order = this.rows.map((_, position) => position);
    order.sort((a, b) => this.scores[b]! - this.scores[a]! || this.rows[a]! - this.rows[b]!);
    return {
      rows: order.map((position) => this.rows[position]!),
      scores: order.map((position) => this.scores[position]!),
    };
  }

  /** True when the kept candidate at `position` ranks below (row, score). */
  private isWorse(position: number, row: number, score: number): boolean {
    const keptScore = this.scores[position]!;
    if (keptScore !== score) return keptScore < score;
    return this.rows[position]! > row;
  }

  private siftUp(position: number): void {
    let child = position;
    while (child > 0) {
      const parent = (child - 1) >> 1;
      if (!this.isWorse(child, this.rows[parent]!, this.scores[parent]!)) break;
      this.swap(child, parent);
      child = parent;
    }
  }

  private siftDown(position: number): void {
    let parent = position;
    const size = this.rows.length;
    for (;;) {
      let worst = parent;
      const left = 2 * parent + 1;
      const right = left + 1;
      if (left < size && this.isWorse(left, this.rows[worst]!, this.scores[worst]!)) worst = left;
      if (right < size && this.isWorse(right, this.rows[worst]!, this.scores[worst]!))
        worst = right;
      if (worst === parent) return;
      this.swap(parent, worst);
      parent = worst;
    }
  }

  private swap(a: number, b: number): void {
    const row = this.rows[a]!;
    const score = this.scores[a]!;
    this.rows[a] = this.rows[b]!;
    this.scores[a] = this.scores[b]!;
    this.rows[b] = row;
    this.scores[b] = score;
  }
}
