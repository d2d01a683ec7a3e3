/**
 * A layout check of a graph file written by hnswlib's saveIndex. hnswlib-node's
 * writeIndexSync does not check its std::ofstream, so a full disk leaves a short
 * file without any error. The save must catch that before it commits.
 *
 * Layout of hnswlib 0.8.0 (bundled with hnswlib-node 3.0.0), native little-endian:
 * a 96-byte header, `count` level-0 records of `sizeDataPerElement` bytes, then for
 * each element a uint32 byte length followed by its upper-level link lists.
 */
import { open } from 'node:fs/promises';

const HEADER_BYTES = 96;
const CURRENT_COUNT_OFFSET = 16;
const SIZE_DATA_PER_ELEMENT_OFFSET = 24;
const M_OFFSET = 72;

export interface GraphFileExpectation {
  /** Elements in the graph, deleted ones included (getCurrentCount). */
  count: number;
  dim: number;
  M: number;
}

/** Returns why the file at `path` is not a complete graph of the expected shape, or null when it is. */
export async function checkGraphFile(
  path: string,
  expected: GraphFileExpectation,
): Promise<string | null> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    if (size < HEADER_BYTES)
      return `graph file ${path} has ${size} bytes, shorter than its ${HEADER_BYTES}-byte header`;

    const header = Buffer.alloc(HEADER_BYTES);
    await handle.read(header, 0, HEADER_BYTES, 0);
    const count = Number(header.readBigUInt64LE(CURRENT_COUNT_OFFSET));
    const sizeDataPerElement = Number(header.readBigUInt64LE(SIZE_DATA_PER_ELEMENT_OFFSET));
    const M = Number(header.readBigUInt64LE(M_OFFSET));
    // Level-0 record: 2M neighbour ids and their uint32 count, the float32 vector, the size_t label.
    const expectedSizeDataPerElement = (2 * expected.M + 1) * 4 + expected.dim * 4 + 8;

    if (count !== expected.count)
      return `graph file ${path} holds ${count} elements, expected ${expected.count}`;
    if (M !== expected.M) return `graph file ${path} has M ${M}, expected ${expected.M}`;
    if (sizeDataPerElement !== expectedSizeDataPerElement) {
      return `graph file ${path} has ${sizeDataPerElement}-byte records, expected ${expectedSizeDataPerElement}`;
    }

    const linkListsStart = HEADER_BYTES + count * sizeDataPerElement;
    if (size < linkListsStart + count * 4) {
      return `graph file ${path} has ${size} bytes, too short for ${count} elements (truncated)`;
    }
    const linkLists = Buffer.alloc(size - linkListsStart);
    await handle.read(linkLists, 0, linkLists.length, linkListsStart);
    return walkLinkLists(path, linkLists, count);
  } finally {
    await handle.close();
  }
}

function walkLinkLists(path: string, linkLists: Buffer, count: number): string | null {
  let position = 0;
  for (let element = 0; element < count; element += 1) {
    if (position + 4 > linkLists.length)
      return `graph file ${path} ends inside the link lists of element ${element} (truncated)`;
    position += 4 + linkLists.readUInt32LE(position);
  }
  if (position > linkLists.length)
    return `graph file ${path} ends inside its last link list (truncated)`;
  if (position < linkLists.length) {
    return `graph file ${path} has ${linkLists.length - position} bytes past its last link list (truncated or corrupt)`;
  }
  return null;
}
