// Stack.stopOnSignals: a process interrupted with SIGINT drops its stack's schema before it
// exits. The child below creates the schema itself instead of starting the apps, which
// would take the models and a minute for the same cleanup path.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { createDatabase } from '@facegate/db';

import { TEST_DATABASE_URL } from '../src/index.js';

const testingIndex = fileURLToPath(new URL('../src/index.js', import.meta.url));
const dbIndex = fileURLToPath(import.meta.resolve('@facegate/db'));

const CHILD = `
import { Stack } from ${JSON.stringify(testingIndex)};
import { createDatabase } from ${JSON.stringify(dbIndex)};
const stack = new Stack();
const db = createDatabase({ url: ${JSON.stringify(TEST_DATABASE_URL)}, schema: stack.schema, maxConnections: 1 });
await db.sql.unsafe('create schema "' + stack.schema + '"');
await db.close();
stack.stopOnSignals();
console.log(stack.schema);
setInterval(() => undefined, 1000);
`;

async function schemaExists(schema: string): Promise<boolean> {
  const db = createDatabase({ url: TEST_DATABASE_URL, schema: 'public', maxConnections: 1 });
  try {
    const rows =
      await db.sql`select 1 from information_schema.schemata where schema_name = ${schema}`;
    return rows.length > 0;
  } finally {
    await db.close();
  }
}

test('SIGINT removes the schema, then exits 130', { timeout: 60_000 }, async () => {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [line] = (await once(child.stdout, 'data')) as [Buffer];
  const schema = line.toString().trim();
  const existedBefore = await schemaExists(schema);

  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill('SIGINT');
  const [code] = await exited;

  assert.match(schema, /^test_[0-9a-f]{12}$/);
  assert.equal(existedBefore, true);
  assert.equal(code, 130, stderr);
  assert.match(stderr, new RegExp(`SIGINT: stopping the stack and removing its schema ${schema}`));
  assert.equal(await schemaExists(schema), false);
});
