// Searches bytes (an index file, a table dump) for a stored copy of a face vector.
// Copies may differ in the last bits after normalisation, so the search compares
// directions (cosine similarity) rather than bytes.

/**
 * Returns the byte offset of the first run of `vector.length` little-endian float32
 * values, at any 4-byte-aligned offset, whose cosine similarity with `vector` is at
 * least `minCosine`; -1 when there is none.
 */
export function findVector(bytes: Buffer, vector: ArrayLike<number>, minCosine = 0.999): number {
  const dim = vector.length;
  let vectorNorm = 0;
  for (let i = 0; i < dim; i += 1) vectorNorm += vector[i]! * vector[i]!;
  vectorNorm = Math.sqrt(vectorNorm);

  for (let alignment = 0; alignment < 4; alignment += 1) {
    const count = Math.floor((bytes.length - alignment) / 4);
    if (count < dim) continue;
    const values = new Float32Array(count);
    for (let i = 0; i < count; i += 1) values[i] = bytes.readFloatLE(alignment + i * 4);

    for (let start = 0; start + dim <= count; start += 1) {
      let dot = 0;
      let norm = 0;
      for (let i = 0; i < dim; i += 1) {
        const value = values[start + i]!;
        dot += value * vector[i]!;
        norm += value * value;
      }
      if (norm > 0 && Number.isFinite(dot) && dot / (Math.sqrt(norm) * vectorNorm) >= minCosine)
        return alignment + start * 4;
    }
  }
  return -1;
}
