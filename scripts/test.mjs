#!/usr/bin/env node
// Runs every compiled test file of the workspace with Node's test runner, one
// file at a time: several suites share the local PostgreSQL, Redis and the two
// cores, and running them in parallel would only make them slower and flakier.
// Arguments filter the files by substring: `node scripts/test.mjs vision`.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

function findTests(dir, out) {
  if (!existsSync(dir)) return out;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) findTests(path, out);
    else if (/\.test\.(js|mjs)$/.test(entry.name)) out.push(path);
  }
  return out;
}

const roots = [
  join(root, 'models', 'test'),
  join(root, 'infra', 'test'),
  join(root, 'benchmarks', 'dist', 'test'),
];
for (const group of ['apps', 'packages']) {
  for (const name of readdirSync(join(root, group)))
    roots.push(join(root, group, name, 'dist', 'test'));
}

const filters = process.argv.slice(2);
const files = roots
  .flatMap((dir) => findTests(dir, []))
  .map((file) => relative(root, file))
  .filter((file) => filters.length === 0 || filters.some((filter) => file.includes(filter)))
  .sort();

if (files.length === 0) {
  console.error('test: no test files found; run the build first (npm test does)');
  process.exit(1);
}

// A test that sets no timeout of its own fails after 10 minutes instead of hanging the run.
// The slowest suites (bulk enrolment, identification) take about a minute here.
const result = spawnSync(
  process.execPath,
  ['--test', '--enable-source-maps', '--test-concurrency=1', '--test-timeout=600000', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
