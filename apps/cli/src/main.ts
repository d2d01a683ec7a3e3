#!/usr/bin/env node
// Command-line access to the vision pipeline (`fr detect <image>`, `fr verify <a> <b>`),
// bulk extraction, API keys and migrations.
// Prints JSON on stdout; on failure prints {"error": {"code", "message"}} on stderr
// and exits 1 (2 for invalid usage or configuration).
import { ConfigError, loadConfig } from '@facegate/config';
import { FaceGateError, serializeError } from '@facegate/errors';

import { dbCommand, keysCommand } from './admin.js';
import { batchCommand } from './batch.js';
import { detectCommand, verifyCommand } from './commands.js';

const USAGE = `usage: fr <command> [arguments]

commands:
  detect <image> [--min-score S] [--limit N]   find faces: box, score, landmarks
  verify <imageA> <imageB> [--threshold T]     compare the largest face of each image
  batch directory|manifest|table|status|cancel  bulk extraction on a running gateway (fr batch --help)
  keys create|list|revoke                      API keys in PostgreSQL (fr keys --help)
  db migrate [--grant ROLE]                    apply migrations as the schema owner; grant a service role`;

const COMMANDS: Record<string, typeof detectCommand> = {
  detect: detectCommand,
  verify: verifyCommand,
  batch: batchCommand,
  keys: keysCommand,
  db: dbCommand,
};

function fail(code: string, message: string, exitCode: number): never {
  process.stderr.write(`${JSON.stringify({ error: { code, message } })}\n`);
  process.exit(exitCode);
}

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  if (!name || name === '--help' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const command = COMMANDS[name];
  if (!command) fail('INVALID_REQUEST', `unknown command '${name}'; see 'fr --help'`, 2);

  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) fail('CONFIG_INVALID', error.message, 2);
    throw error;
  }

  try {
    const output = await command(config, args);
    process.stdout.write(`${JSON.stringify(output)}\n`);
  } catch (error) {
    const serialized = serializeError(error);
    const usageError = error instanceof FaceGateError && error.code === 'INVALID_REQUEST';
    fail(serialized.code, serialized.message, usageError ? 2 : 1);
  }
}

await main(process.argv.slice(2));
