#!/usr/bin/env node
// Prints the configuration table for the README (`--env` prints .env.example
// instead) from the variable definitions in packages/config, so the docs list
// exactly what the code reads. Run after `npm run build`.
import { variables } from '../packages/config/dist/src/index.js';

const asEnv = process.argv.includes('--env');
const rows = Object.values(variables);
if (asEnv) {
  console.log('# Every variable the service reads, with its default. Nothing loads this file by');
  console.log('# itself: export the lines you change (for example `set -a; . ./.env; set +a`');
  console.log('# before `npm start`, or `docker compose --env-file .env`). Unset or empty');
  console.log('# variables take the default shown.');
  for (const spec of rows) {
    console.log('');
    console.log(`# ${spec.description}`);
    const value = spec.defaultLabel ?? spec.defaultValue ?? '';
    console.log(`# ${spec.env}=${value}`);
  }
} else {
  console.log('| variable | default | what it sets |');
  console.log('|---|---|---|');
  for (const spec of rows) {
    const value = spec.defaultLabel ?? spec.defaultValue ?? '(unset)';
    console.log(`| \`${spec.env}\` | \`${value}\` | ${spec.description.replaceAll('|', '\\|')} |`);
  }
}
