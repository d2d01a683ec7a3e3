import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';

import { type BatchReport, ProgressLine } from '../src/batch.js';

function report(fields: Partial<BatchReport>): BatchReport {
  return {
    id: 'b',
    status: 'running',
    total: 94,
    done: 0,
    facesStored: 0,
    failed: 0,
    pending: 94,
    ...fields,
  };
}

// A stream that is not a terminal and drops what it is given.
const quiet = new Writable({
  write: (_chunk, _encoding, done) => done(),
}) as unknown as NodeJS.WriteStream;

test('progress rate of a finished batch', () => {
  const progress = new ProgressLine(quiet);
  // One poll only: the batch ended before a second one could measure a rate.
  const finished = report({
    status: 'completed',
    done: 94,
    pending: 0,
    createdAt: '2026-12-05T09:00:00.000Z',
    finishedAt: '2026-12-05T09:00:00.500Z',
  });
  progress.update(finished);
  assert.match(progress.format(finished), / 188\.0 items\/s /);
});

test('progress rate of a running batch', () => {
  const progress = new ProgressLine(quiet);
  progress.update(report({ done: 10, pending: 84 }), 1_000);
  progress.update(report({ done: 30, pending: 64 }), 3_000);
  const line = progress.format(report({ done: 30, pending: 64 }));
  assert.match(line, / 10\.0 items\/s ETA /);
});
