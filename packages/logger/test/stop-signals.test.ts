import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

const moduleUrl = new URL('../src/index.js', import.meta.url).href;

/**
 * Runs a service-like script that installs the stop signal handlers, sends it `signals`
 * once it prints 'waiting', and returns its exit code and output.
 */
async function runScript(
  body: string,
  signals: NodeJS.Signals[],
): Promise<{ code: number | null; output: string }> {
  const script = `
    import { createLogger, handleStopSignals } from ${JSON.stringify(moduleUrl)};
    const logger = createLogger('test');
    const signals = handleStopSignals(logger);
    ${body}
    console.log('waiting');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script]);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    if (output.includes('waiting') && signals.length > 0) {
      for (const signal of signals.splice(0)) child.kill(signal);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, output };
}

test('signal during start-up exits 0', async () => {
  const { code, output } = await runScript('', ['SIGTERM']);

  assert.equal(code, 0, output);
  assert.match(output, /"duringStartup":true/);
  assert.match(output, /"msg":"stopped"/);
});

test('signal after start-up runs the shutdown once', async () => {
  const body = `
    signals.started(async (signal) => {
      console.log('shutdown on ' + signal);
      await new Promise((resolve) => setTimeout(resolve, 200));
    });
  `;

  const { code, output } = await runScript(body, ['SIGINT', 'SIGTERM']);

  assert.equal(code, 0, output);
  // Both signals are pending at once, and either may be handled first.
  assert.equal(output.match(/shutdown on SIG(INT|TERM)/g)?.length, 1, output);
  assert.doesNotMatch(output, /duringStartup/);
});
