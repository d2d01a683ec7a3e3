/**
 * The hnswlib-node addon this process uses: the AVX2 build that `npm run setup` makes
 * on a CPU with AVX2 and FMA (scripts/build-native.mjs), else the portable build that
 * pnpm installed. Both come from the same sources and read and write the same files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type * as Hnswlib from 'hnswlib-node';

/** Build of the addon that this process loaded. */
export type HnswlibBuild = 'avx2' | 'portable';

const require = createRequire(import.meta.url);

/** The AVX2 addon, from dist/src of this package up to the repository's node_modules. */
const AVX2_ADDON = fileURLToPath(
  new URL(
    '../../../../node_modules/.facegate-native/hnswlib-node-avx2/build/Release/addon.node',
    import.meta.url,
  ),
);

/** Returns true when the CPU running this process reports both AVX2 and FMA (Linux). */
function cpuHasAvx2AndFma(): boolean {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((entry) => entry.startsWith('flags'));
    const flags = new Set((line?.split(':')[1] ?? '').trim().split(/\s+/));
    return flags.has('avx2') && flags.has('fma');
  } catch {
    return false;
  }
}

function load(): { binding: typeof Hnswlib; build: HnswlibBuild } {
  const avx2Usable =
    process.env.FACEGATE_NATIVE_SIMD !== 'off' &&
    process.arch === 'x64' &&
    existsSync(AVX2_ADDON) &&
    cpuHasAvx2AndFma();
  if (avx2Usable) {
    try {
      return { binding: require(AVX2_ADDON) as typeof Hnswlib, build: 'avx2' };
    } catch {
      // A copy built for another Node version fails to load; the portable build still works.
    }
  }
  return { binding: require('hnswlib-node') as typeof Hnswlib, build: 'portable' };
}

const loaded = load();

export const hnswlib: typeof Hnswlib = loaded.binding;
export const hnswlibBuild: HnswlibBuild = loaded.build;
