/**
 * The live face vectors packed into one contiguous Float32Array, so exact search
 * scans memory in order. Removing a face moves the last row into its place,
 * which keeps rows 0..count-1 dense at the cost of a stable row order.
 */
export class LiveVectorStore {
  private matrix: Float32Array;
  private capacityRows: number;
  private readonly faceIdByRow: number[] = [];
  private readonly rowByFaceId = new Map<number, number>();

  constructor(
    readonly dim: number,
    initialRows: number,
  ) {
    this.capacityRows = Math.max(1, initialRows);
    this.matrix = new Float32Array(this.capacityRows * dim);
  }

  get count(): number {
    return this.faceIdByRow.length;
  }

  /** The backing matrix; only rows 0..count-1 contain live vectors. */
  get rows(): Float32Array {
    return this.matrix;
  }

  faceIdAt(row: number): number {
    const faceId = this.faceIdByRow[row];
    if (faceId === undefined)
      throw new RangeError(`row ${row} is outside the ${this.count} live rows`);
    return faceId;
  }

  has(faceId: number): boolean {
    return this.rowByFaceId.has(faceId);
  }

  /**
   * Returns where a face's vector starts in `rows`, or -1 for an unknown face. Valid until the
   * next change to the store: a removal moves the last row.
   */
  offsetOf(faceId: number): number {
    const row = this.rowByFaceId.get(faceId);
    return row === undefined ? -1 : row * this.dim;
  }

  /** Returns a view of the stored vector (not a copy), or undefined for an unknown face. */
  get(faceId: number): Float32Array | undefined {
    const row = this.rowByFaceId.get(faceId);
    if (row === undefined) return undefined;
    return this.matrix.subarray(row * this.dim, (row + 1) * this.dim);
  }

  /** Stores the vector of a face, overwriting its row when the face is already present. */
  set(faceId: number, vector: Float32Array): void {
    let row = this.rowByFaceId.get(faceId);
    if (row === undefined) {
      if (this.count === this.capacityRows) this.grow();
      row = this.count;
      this.faceIdByRow.push(faceId);
      this.rowByFaceId.set(faceId, row);
    }
    this.matrix.set(vector, row * this.dim);
  }

  /** Removes a face and returns whether it was present. */
  delete(faceId: number): boolean {
    const row = this.rowByFaceId.get(faceId);
    if (row === undefined) return false;

    const lastRow = this.count - 1;
    if (row !== lastRow) {
      const movedFaceId = this.faceIdByRow[lastRow]!;
      this.matrix.copyWithin(row * this.dim, lastRow * this.dim, (lastRow + 1) * this.dim);
      this.faceIdByRow[row] = movedFaceId;
      this.rowByFaceId.set(movedFaceId, row);
    }
    // The vacated last row would otherwise keep a copy of a vector until it is reused.
    this.matrix.fill(0, lastRow * this.dim, (lastRow + 1) * this.dim);
    this.faceIdByRow.pop();
    this.rowByFaceId.delete(faceId);
    return true;
  }

  faceIds(): IterableIterator<number> {
    return this.rowByFaceId.keys();
  }

  private grow(): void {
    this.capacityRows *= 2;
    const grown = new Float32Array(this.capacityRows * this.dim);
    grown.set(this.matrix);
    this.matrix = grown;
  }
}
