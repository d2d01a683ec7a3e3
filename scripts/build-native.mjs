#!/usr/bin/env node
// Builds the optional native addons into node_modules/.facegate-native. Each is a
// speed-up with a portable fallback, so a failed build warns and the setup goes on.
//
// hnswlib-node-avx2: a second copy of hnswlib-node's addon with AVX2 and FMA
// instructions, when the CPU of this machine has them. pnpm builds hnswlib-node
// with the compiler's defaults, which on x86-64 limit hnswlib's distance
// functions to SSE. With AVX2, a search of 20,000 128-D vectors took 0.34 ms
// instead of 0.65 ms on the development machine. @facegate/index loads it only on
// a CPU that has both instruction sets, so an image built here still starts on
// an older CPU (with the portable build). FACEGATE_NATIVE_SIMD=off skips the
// build and removes an existing copy.
//
// jpeg-decoder: packages/vision/native/jpeg-decoder, which @facegate/vision uses
// to decode plain JPEG files with libjpeg-turbo directly (3 times faster than
// through sharp; see packages/vision/src/fast-jpeg.ts). FACEGATE_NATIVE_JPEG=off
// skips the build and removes an existing copy.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const nativeDir = join(root, 'node_modules', '.facegate-native');
const CXXFLAGS = '-O3 -mavx2 -mfma';
const quiet = process.argv.includes('--quiet');

function log(message) {
  if (!quiet) console.log(`native: ${message}`);
}

/** Reads the CPU flags of the first processor from /proc/cpuinfo (Linux only). */
function cpuFlags() {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((entry) => entry.startsWith('flags'));
    return new Set((line?.split(':')[1] ?? '').trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

/** Finds node-gyp: the one npm runs for install scripts, else the one bundled with pnpm. */
function nodeGypPath() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(root, 'node_modules', 'pnpm', 'dist', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(
      dirname(process.execPath),
      '..',
      'lib',
      'node_modules',
      'npm',
      'node_modules',
      'node-gyp',
      'bin',
      'node-gyp.js',
    ),
  ];
  return candidates.find((candidate) => candidate && existsSync(candidate));
}

/** True when `stamp` in `target` records exactly `expected` (the build is current). */
function isCurrent(target, expected) {
  const stampPath = join(target, 'build-stamp.json');
  return existsSync(stampPath) && readFileSync(stampPath, 'utf8') === JSON.stringify(expected);
}

/**
 * Runs `node-gyp rebuild` in `target` (sources already copied there) and checks that
 * `addon` came out. Returns false, with `target` removed, when anything failed.
 */
function nodeGypBuild(target, addon, env, expected) {
  const nodeGyp = nodeGypPath();
  if (!nodeGyp) return false;
  // Outside npm (plain `node scripts/setup.mjs`) node-gyp would download the Node headers;
  // the headers installed beside this node serve as well when present.
  const prefix = dirname(dirname(process.execPath));
  const nodedir =
    process.env.npm_config_nodedir ??
    (existsSync(join(prefix, 'include', 'node', 'node.h')) ? prefix : undefined);
  const result = spawnSync(
    process.execPath,
    [nodeGyp, 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])],
    { cwd: target, stdio: quiet ? 'ignore' : 'inherit', env: { ...process.env, ...env } },
  );
  if (result.status !== 0 || !existsSync(join(target, 'build', 'Release', addon))) {
    rmSync(target, { recursive: true, force: true });
    return false;
  }
  rmSync(join(target, 'build', 'Release', 'obj.target'), { recursive: true, force: true });
  writeFileSync(join(target, 'build-stamp.json'), JSON.stringify(expected));
  return true;
}

/** Returns true, after removing `target`, when `variable` is set to off for this run. */
function turnedOff(variable, target, fallback) {
  if (process.env[variable] !== 'off') return false;
  if (existsSync(target)) rmSync(target, { recursive: true, force: true });
  log(`${variable}=off: ${fallback}`);
  return true;
}

function buildHnswlibAvx2() {
  const target = join(nativeDir, 'hnswlib-node-avx2');
  if (turnedOff('FACEGATE_NATIVE_SIMD', target, 'the matcher uses the portable hnswlib-node build'))
    return;
  const flags = cpuFlags();
  if (process.arch !== 'x64' || !flags.has('avx2') || !flags.has('fma')) {
    log('this CPU lacks AVX2 or FMA: the matcher uses the portable hnswlib-node build');
    return;
  }

  // The package as pnpm installed it: its sources and its node-addon-api dependency.
  const requireFromIndex = createRequire(join(root, 'packages', 'index', 'package.json'));
  const packageJson = requireFromIndex.resolve('hnswlib-node/package.json');
  const source = dirname(packageJson);
  const version = JSON.parse(readFileSync(packageJson, 'utf8')).version;
  const expected = { package: 'hnswlib-node', version, cxxflags: CXXFLAGS, node: process.version };
  if (isCurrent(target, expected)) return;
  if (!nodeGypPath()) {
    log('node-gyp not found: the matcher uses the portable hnswlib-node build');
    return;
  }

  // Printed even with --quiet: the build takes a while, once.
  console.log(`native: building hnswlib-node ${version} with ${CXXFLAGS} (once, a few seconds)`);
  rmSync(target, { recursive: true, force: true });
  mkdirSync(join(target, 'node_modules'), { recursive: true });
  for (const entry of ['binding.gyp', 'src', 'package.json']) {
    cpSync(join(source, entry), join(target, entry), { recursive: true });
  }
  const addonApi = dirname(createRequire(packageJson).resolve('node-addon-api/package.json'));
  symlinkSync(addonApi, join(target, 'node_modules', 'node-addon-api'), 'dir');
  if (!nodeGypBuild(target, 'addon.node', { CXXFLAGS }, expected)) {
    console.warn(
      'native: the AVX2 build of hnswlib-node failed; the matcher uses the portable build',
    );
    return;
  }
  log('AVX2 build of hnswlib-node ready');
}

function buildJpegDecoder() {
  const target = join(nativeDir, 'jpeg-decoder');
  if (turnedOff('FACEGATE_NATIVE_JPEG', target, 'every image is decoded through sharp')) return;
  const source = join(root, 'packages', 'vision', 'native', 'jpeg-decoder');
  const files = ['binding.gyp', 'decoder.c'];
  const expected = {
    addon: 'jpeg-decoder',
    sources: files.map((file) => readFileSync(join(source, file), 'utf8')).join('\n'),
    node: process.version,
  };
  if (isCurrent(target, expected)) return;
  if (!nodeGypPath()) {
    log('node-gyp not found: every image is decoded through sharp');
    return;
  }
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  for (const file of files) cpSync(join(source, file), join(target, file));
  if (!nodeGypBuild(target, 'jpeg_decoder.node', {}, expected)) {
    console.warn('native: the JPEG decoder addon did not build; images are decoded through sharp');
    return;
  }
  log('JPEG decoder addon ready');
}

buildHnswlibAvx2();
buildJpegDecoder();
