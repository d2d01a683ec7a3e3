#!/usr/bin/env node
// Streams a folder of JPEG/PNG images to the gateway's WebSocket endpoint in a
// loop at a fixed frame rate, as an entrance camera would, and prints one line
// per result and a summary. Needs Node 20 and `pnpm install` (for `ws`).
//
//   node examples/stream-client.mjs --dir ../shared/faces/identity-small/face_recognition_knn/test \
//     --fps 10 --mode recognize --camera cam-1 --count 50
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import {
  formatMs,
  loadWebSocket,
  loopbackUrl,
  numberOption,
  percentile,
} from './stream-common.mjs';

const USAGE = `Usage: node examples/stream-client.mjs --dir FOLDER [options]

  --url URL          stream endpoint on loopback (default ws://127.0.0.1:8000/api/v1/stream)
  --dir FOLDER       folder of .jpg, .jpeg and .png files, sent in name order, in a loop
  --fps N            frames sent per second (default 10, 0.1-120)
  --mode MODE        recognize or detect (default recognize)
  --camera ID        camera id echoed in every result
  --count N          frames to send before stopping (default: until Ctrl-C)
  --min-score S      detection score threshold, 0.05-1 (default: the server's)
  --top-k K          candidates per face in recognize mode, 1-20 (default 1)
  --threshold T      identification threshold in recognize mode, 0.2-0.95
  --quiet            print the summary only`;

/** How long to wait for the last frame's result or error after sending stops. */
const DRAIN_TIMEOUT_MS = 10_000;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: 'ws://127.0.0.1:8000/api/v1/stream' },
      dir: { type: 'string' },
      fps: { type: 'string' },
      mode: { type: 'string', default: 'recognize' },
      camera: { type: 'string' },
      count: { type: 'string' },
      'min-score': { type: 'string' },
      'top-k': { type: 'string' },
      threshold: { type: 'string' },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (!values.dir) throw new Error('missing --dir: the folder of images to stream');
  if (!['recognize', 'detect'].includes(values.mode))
    throw new Error(`--mode must be recognize or detect, got ${JSON.stringify(values.mode)}`);

  const config = { type: 'config', mode: values.mode };
  if (values.camera !== undefined) config.camera_id = values.camera;
  const minScore = numberOption(values, 'min-score', undefined, 0.05, 1);
  if (minScore !== undefined) config.min_score = minScore;
  if (values.mode === 'recognize') {
    const topK = numberOption(values, 'top-k', undefined, 1, 20);
    const threshold = numberOption(values, 'threshold', undefined, 0.2, 0.95);
    if (topK !== undefined) config.top_k = topK;
    if (threshold !== undefined) config.threshold = threshold;
  }
  return {
    url: loopbackUrl(values.url),
    dir: values.dir,
    fps: numberOption(values, 'fps', 10, 0.1, 120),
    count: numberOption(values, 'count', Infinity, 1, Number.MAX_SAFE_INTEGER),
    quiet: values.quiet,
    config,
  };
}

async function listImages(dir) {
  const names = (await readdir(dir))
    .filter((name) => ['.jpg', '.jpeg', '.png'].includes(extname(name).toLowerCase()))
    .sort();
  if (names.length === 0) throw new Error(`no .jpg, .jpeg or .png files in ${dir}`);
  return names.map((name) => join(dir, name));
}

function describeFaces(result) {
  if (result.faces.length === 0) return 'no face';
  if (result.mode === 'detect')
    return result.faces.map((face) => `face ${face.score.toFixed(2)}`).join(', ');
  return result.faces
    .map((face) =>
      face.match ? `${face.match.name} (${face.match.similarity.toFixed(2)})` : 'unknown',
    )
    .join(', ');
}

async function main() {
  const options = parseOptions();
  const files = await listImages(options.dir);
  const WebSocket = loadWebSocket();
  // A gateway with API keys needs one with the recognize scope, sent on the upgrade.
  const headers = process.env.FR_API_KEY ? { 'x-api-key': process.env.FR_API_KEY } : {};
  const ws = new WebSocket(options.url, { headers });

  /** Frames sent that have no result or error yet: frame id -> { file, sentAtMs }. */
  const pending = new Map();
  const latenciesMs = [];
  const summary = { sent: 0, results: 0, dropped: 0, errors: 0, faces: 0 };
  let lastFrameId = 0;
  let timer;
  let stopped = false;
  let startedAtMs = 0;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });

  function stopSending() {
    stopped = true;
    clearTimeout(timer);
    if (lastFrameId === 0 || !pending.has(lastFrameId)) {
      finish();
      return;
    }
    setTimeout(finish, DRAIN_TIMEOUT_MS).unref();
  }

  async function sendFrame() {
    const frameId = lastFrameId + 1;
    const file = files[(frameId - 1) % files.length];
    const bytes = await readFile(file);
    if (ws.readyState !== WebSocket.OPEN) return;
    lastFrameId = frameId;
    pending.set(frameId, { file, sentAtMs: performance.now() });
    ws.send(JSON.stringify({ type: 'frame', frame_id: frameId, timestamp: Date.now() }));
    ws.send(bytes);
    summary.sent += 1;
  }

  // Each send is scheduled from the start time, so slow file reads do not make the rate drift.
  function scheduleNext() {
    if (stopped) return;
    if (summary.sent >= options.count) {
      stopSending();
      return;
    }
    const dueAtMs = startedAtMs + (summary.sent * 1000) / options.fps;
    timer = setTimeout(
      () => {
        sendFrame().then(scheduleNext, (error) => {
          console.error(`cannot send a frame: ${error.message}`);
          stopSending();
        });
      },
      Math.max(0, dueAtMs - performance.now()),
    );
  }

  /** Forgets frames up to `frameId`: results arrive in frame order, so earlier ones were dropped. */
  function settle(frameId) {
    const entry = pending.get(frameId);
    for (const id of pending.keys()) if (id <= frameId) pending.delete(id);
    if (stopped && frameId === lastFrameId) finish();
    return entry;
  }

  ws.on('open', () => {
    ws.send(JSON.stringify(options.config));
    startedAtMs = performance.now();
    console.log(
      `streaming ${files.length} images from ${options.dir} at ${options.fps} fps to ${options.url.href}`,
    );
    scheduleNext();
  });

  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const message = JSON.parse(data.toString());
    if (message.type === 'result') {
      const entry = settle(message.frame_id);
      const latencyMs = entry ? performance.now() - entry.sentAtMs : Number.NaN;
      if (entry) latenciesMs.push(latencyMs);
      summary.results += 1;
      summary.dropped += message.dropped;
      summary.faces += message.faces.length;
      if (!options.quiet) {
        const file = entry ? entry.file.split('/').pop() : '?';
        console.log(
          `frame ${String(message.frame_id).padStart(5)}  ${file.padEnd(24)} ${describeFaces(message)}` +
            `  latency ${formatMs(latencyMs)} ms (gateway ${formatMs(message.timings.gatewayMs)} ms)` +
            (message.dropped ? `  dropped ${message.dropped}` : ''),
        );
      }
    } else if (message.type === 'error') {
      summary.errors += 1;
      if (message.frame_id !== undefined) settle(message.frame_id);
      console.error(
        `frame ${message.frame_id ?? '-'}  error ${message.error.code}: ${message.error.message}`,
      );
    }
  });

  ws.on('error', (error) => {
    console.error(`stream error: ${error.message}`);
  });
  ws.on('close', (code, reason) => {
    if (code !== 1000 && code !== 1005)
      console.error(`the gateway closed the stream: ${code} ${reason.toString()}`);
    stopped = true;
    clearTimeout(timer);
    finish();
  });
  process.once('SIGINT', stopSending);

  await finished;
  const elapsedS = (performance.now() - startedAtMs) / 1000;
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  console.log(
    [
      `sent ${summary.sent} frames in ${elapsedS.toFixed(1)} s`,
      `results ${summary.results} (${(summary.results / elapsedS).toFixed(1)}/s)`,
      `dropped ${summary.dropped}`,
      `errors ${summary.errors}`,
      `faces ${summary.faces}`,
      `latency p50 ${formatMs(percentile(latenciesMs, 0.5))} ms, p99 ${formatMs(percentile(latenciesMs, 0.99))} ms, max ${formatMs(percentile(latenciesMs, 1))} ms`,
    ].join('; '),
  );
  process.exitCode = summary.sent > 0 && summary.results === 0 ? 1 : 0;
}

main().catch((error) => {
  console.error(error.message);
  process.exit(2);
});
