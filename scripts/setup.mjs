#!/usr/bin/env node
// Installs the workspace dependencies with the pnpm version pinned in
// package.json (no global pnpm needed) and fetches the model files.
// With --if-needed the install is skipped while the lockfile and every
// package.json are unchanged since the last successful install.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stampPath = join(root, 'node_modules', '.facegate-setup-stamp');
const ifNeeded = process.argv.includes('--if-needed');

function manifestFingerprint() {
  const hash = createHash('sha256');
  const files = ['package.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml', '.npmrc'];
  for (const group of ['apps', 'packages']) {
    const groupDir = join(root, group);
    if (!existsSync(groupDir)) continue;
    for (const name of readdirSync(groupDir).sort()) files.push(join(group, name, 'package.json'));
  }
  files.push(join('benchmarks', 'package.json'));
  for (const file of files) {
    const path = join(root, file);
    hash.update(file);
    hash.update(existsSync(path) ? readFileSync(path) : 'missing');
  }
  return hash.digest('hex');
}

function run(command, args, extraEnv = {}) {
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip', ...extraEnv },
  });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    console.error(`setup: '${command} ${args.join(' ')}' failed with exit code ${result.status}`);
    process.exit(result.status ?? 1);
  }
}

function pnpmVersion() {
  const packageManager = JSON.parse(
    readFileSync(join(root, 'package.json'), 'utf8'),
  ).packageManager;
  const match = /^pnpm@(\d+\.\d+\.\d+)$/.exec(packageManager ?? '');
  if (!match)
    throw new Error(`package.json packageManager must be pnpm@x.y.z, found '${packageManager}'`);
  return match[1];
}

function installDependencies() {
  const version = pnpmVersion();
  const args = ['install', '--config.confirmModulesPurge=false'];
  // CI must install exactly what the lockfile pins; a developer who edits a
  // package.json gets the lockfile updated instead.
  if (process.env.CI && existsSync(join(root, 'pnpm-lock.yaml'))) args.push('--frozen-lockfile');

  const localPnpm = join(root, 'node_modules', 'pnpm', 'package.json');
  const haveLocal =
    existsSync(localPnpm) && JSON.parse(readFileSync(localPnpm, 'utf8')).version === version;
  if (haveLocal) {
    run(process.execPath, [join(root, 'node_modules', 'pnpm', 'bin', 'pnpm.cjs'), ...args]);
  } else {
    run('npm', ['exec', '--yes', `--package=pnpm@${version}`, '--', 'pnpm', ...args]);
  }
  writeFileSync(stampPath, manifestFingerprint());
}

const upToDate =
  ifNeeded && existsSync(stampPath) && readFileSync(stampPath, 'utf8') === manifestFingerprint();
if (!upToDate) installDependencies();

run(process.execPath, [
  join(root, 'scripts', 'build-native.mjs'),
  ...(ifNeeded ? ['--quiet'] : []),
]);

run(process.execPath, [join(root, 'models', 'fetch.mjs'), ...(ifNeeded ? ['--quiet'] : [])]);
