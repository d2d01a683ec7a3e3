#!/usr/bin/env node
// Benchmark of the WebSocket stream endpoint against a stack that is already
// running on loopback. It starts nothing itself, and measures two things.
//  (a) One stream, in closed loop and in open loop. In closed loop the next frame
//      goes out when the previous result arrives. In open loop frames go out at a
//      high fixed rate, and newer frames replace waiting ones.
//  (b) Several streams at once, each sending more than its share of the workers.
//      It reports the processed frame rate per stream and its spread around the mean.
// Latency is client-side: from sending a frame to receiving its result.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import {
  formatMs,
  loadWebSocket,
  loopbackUrl,
  numberOption,
  percentile,
} from './stream-common.mjs';

const DEFAULT_IMAGE = fileURLToPath(
  new URL('../../shared/peers/obama1_640x480.jpg', import.meta.url),
);

const USAGE = `Usage: node examples/bench-stream.mjs [options]   (npm run bench:stream -- [options])

  --url URL          stream endpoint on loopback (default ws://127.0.0.1:8000/api/v1/stream)
  --file PATH        JPEG or PNG sent as every frame (default ${DEFAULT_IMAGE})
  --mode MODE        recognize or detect (default recognize)
  --duration S       seconds measured per phase (default 10)
  --warmup S         seconds of unmeasured closed-loop frames first (default 3)
  --open-fps N       frame rate of the single open-loop stream (default 100)
  --streams N        streams of phase (b) (default 8)
  --stream-fps N     frame rate of each stream in phase (b) (default 30)
  --max-spread P     largest deviation from the mean rate, in percent, that phase (b) accepts (default 20)`;

/** How long to wait for the last frame's result or error after a phase's window closes. */
const DRAIN_TIMEOUT_MS = 10_000;

/** Frame ids are unique across phases and streams, so a late result from one phase is never counted in the next. */
let frameCounter = 0;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: 'ws://127.0.0.1:8000/api/v1/stream' },
      file: { type: 'string', default: DEFAULT_IMAGE },
      mode: { type: 'string', default: 'recognize' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      'open-fps': { type: 'string' },
      streams: { type: 'string' },
      'stream-fps': { type: 'string' },
      'max-spread': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!['recognize', 'detect'].includes(values.mode))
    throw new Error(`--mode must be recognize or detect, got ${JSON.stringify(values.mode)}`);
  return {
    url: loopbackUrl(values.url),
    file: values.file,
    mode: values.mode,
    durationMs: numberOption(values, 'duration', 10, 1, 3600) * 1000,
    warmupMs: numberOption(values, 'warmup', 3, 0, 600) * 1000,
    openFps: numberOption(values, 'open-fps', 100, 1, 1000),
    streams: numberOption(values, 'streams', 8, 1, 64),
    streamFps: numberOption(values, 'stream-fps', 30, 1, 1000),
    maxSpreadPercent: numberOption(values, 'max-spread', 20, 0, 100),
  };
}

async function connect(WebSocket, url, config) {
  // A gateway with API keys needs one with the recognize scope, sent on the upgrade.
  const headers = process.env.FR_API_KEY ? { 'x-api-key': process.env.FR_API_KEY } : {};
  const ws = new WebSocket(url, { headers });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_request, response) =>
      reject(new Error(`the gateway rejected the stream with HTTP ${response.statusCode}`)),
    );
    ws.once('error', reject);
  });
  ws.on('error', (error) => console.error(`stream error: ${error.message}`));
  ws.send(JSON.stringify(config));
  return ws;
}

/**
 * Sends `image` on `ws` for `durationMs`: after each answer when `fps` is
 * undefined (closed loop), else at `fps` frames per second (open loop). Counts
 * only answers that arrive inside the window, then waits for the last frame.
 */
function measure(ws, image, { durationMs, fps }) {
  return new Promise((resolve) => {
    const sentAtMs = new Map();
    const latenciesMs = [];
    const counts = { sent: 0, results: 0, dropped: 0, errors: 0 };
    const errorCodes = new Set();
    const startMs = performance.now();
    const endMs = startMs + durationMs;
    let lastFrameId;
    let sendTimer;
    let drainTimer;
    let closed = false;

    const send = () => {
      frameCounter += 1;
      lastFrameId = frameCounter;
      sentAtMs.set(lastFrameId, performance.now());
      ws.send(JSON.stringify({ type: 'frame', frame_id: lastFrameId }));
      ws.send(image);
      counts.sent += 1;
    };
    const done = () => {
      if (closed) return;
      closed = true;
      clearTimeout(sendTimer);
      clearTimeout(drainTimer);
      ws.off('message', onMessage);
      resolve({ ...counts, latenciesMs, errorCodes: [...errorCodes], seconds: durationMs / 1000 });
    };
    const onMessage = (data, isBinary) => {
      if (isBinary) return;
      const message = JSON.parse(data.toString());
      if (message.frame_id === undefined) return;
      const nowMs = performance.now();
      const sent = sentAtMs.get(message.frame_id);
      // Results come in frame order, so frames before this one were dropped.
      for (const id of sentAtMs.keys()) if (id <= message.frame_id) sentAtMs.delete(id);

      if (nowMs <= endMs) {
        if (message.type === 'result') {
          counts.results += 1;
          counts.dropped += message.dropped;
          if (sent !== undefined) latenciesMs.push(nowMs - sent);
        } else {
          counts.errors += 1;
          errorCodes.add(message.error.code);
        }
        if (fps === undefined) send();
      } else if (message.frame_id === lastFrameId) {
        done();
      }
    };
    ws.on('message', onMessage);
    ws.once('close', done);

    if (fps === undefined) {
      send();
    } else {
      // Each send is scheduled from the start time, so timer lateness does not lower the rate.
      const tick = () => {
        if (performance.now() >= endMs) return;
        send();
        const dueMs = startMs + (counts.sent * 1000) / fps;
        sendTimer = setTimeout(tick, Math.max(0, dueMs - performance.now()));
      };
      tick();
    }
    setTimeout(() => {
      clearTimeout(sendTimer);
      if (!sentAtMs.has(lastFrameId)) done();
      else drainTimer = setTimeout(done, DRAIN_TIMEOUT_MS);
    }, durationMs);
  });
}

function summarize(name, streams, offeredFps, runs) {
  const seconds = runs[0].seconds;
  const latenciesMs = runs.flatMap((run) => run.latenciesMs);
  const total = (field) => runs.reduce((sum, run) => sum + run[field], 0);
  return {
    name,
    streams,
    offeredFps,
    processedFps: total('results') / seconds,
    p50Ms: percentile(latenciesMs, 0.5),
    p99Ms: percentile(latenciesMs, 0.99),
    dropped: total('dropped'),
    errors: total('errors'),
    errorCodes: [...new Set(runs.flatMap((run) => run.errorCodes))],
  };
}

function printTable(headers, rows) {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => String(row[column]).length)),
  );
  const line = (cells) =>
    cells
      .map((cell, column) =>
        column === 0 ? String(cell).padEnd(widths[column]) : String(cell).padStart(widths[column]),
      )
      .join('  ');
  console.log(line(headers));
  for (const row of rows) console.log(line(row));
}

async function main() {
  const options = parseOptions();
  const WebSocket = loadWebSocket();
  const image = await readFile(options.file);
  const config = { type: 'config', mode: options.mode, camera_id: 'bench' };
  const seconds = options.durationMs / 1000;
  console.log(
    `bench-stream: ${options.url.href}, ${options.mode}, ${options.file} (${image.length} bytes), ${seconds} s per phase`,
  );

  const single = await connect(WebSocket, options.url, config);
  if (options.warmupMs > 0) await measure(single, image, { durationMs: options.warmupMs });
  const closedLoop = await measure(single, image, { durationMs: options.durationMs });
  const openLoop = await measure(single, image, {
    durationMs: options.durationMs,
    fps: options.openFps,
  });
  single.close(1000);

  const sockets = await Promise.all(
    Array.from({ length: options.streams }, (_, index) =>
      connect(WebSocket, options.url, { ...config, camera_id: `bench-${index + 1}` }),
    ),
  );
  const parallel = await Promise.all(
    sockets.map((ws) =>
      measure(ws, image, { durationMs: options.durationMs, fps: options.streamFps }),
    ),
  );
  for (const ws of sockets) ws.close(1000);

  const phases = [
    summarize('one stream, closed loop', 1, '-', [closedLoop]),
    summarize(`one stream, open loop`, 1, options.openFps, [openLoop]),
    summarize(
      `${options.streams} streams, open loop`,
      options.streams,
      options.streams * options.streamFps,
      parallel,
    ),
  ];
  console.log('');
  printTable(
    ['phase', 'streams', 'offered fps', 'processed fps', 'p50 ms', 'p99 ms', 'dropped', 'errors'],
    phases.map((phase) => [
      phase.name,
      phase.streams,
      phase.offeredFps,
      phase.processedFps.toFixed(1),
      formatMs(phase.p50Ms),
      formatMs(phase.p99Ms),
      phase.dropped,
      phase.errors + (phase.errorCodes.length ? ` (${phase.errorCodes.join(', ')})` : ''),
    ]),
  );

  const rates = parallel.map((run) => run.results / run.seconds);
  const meanFps = rates.reduce((sum, rate) => sum + rate, 0) / rates.length;
  const deviations = rates.map((rate) => (meanFps > 0 ? ((rate - meanFps) / meanFps) * 100 : 0));
  console.log('');
  printTable(
    ['stream', 'processed fps', 'vs mean', 'p50 ms', 'p99 ms', 'dropped'],
    parallel.map((run, index) => [
      `bench-${index + 1}`,
      rates[index].toFixed(2),
      `${deviations[index] >= 0 ? '+' : ''}${deviations[index].toFixed(1)} %`,
      formatMs(percentile(run.latenciesMs, 0.5)),
      formatMs(percentile(run.latenciesMs, 0.99)),
      run.dropped,
    ]),
  );
  const spread = Math.max(...deviations.map(Math.abs));
  const fair = meanFps > 0 && spread <= options.maxSpreadPercent;
  console.log(
    `\nmean ${meanFps.toFixed(2)} fps per stream; largest deviation ${spread.toFixed(1)} % ` +
      `(target within ${options.maxSpreadPercent} %): ${fair ? 'ok' : 'NOT MET'}`,
  );
  process.exitCode = fair ? 0 : 1;
}

main().catch((error) => {
  console.error(error.message);
  process.exit(2);
});
