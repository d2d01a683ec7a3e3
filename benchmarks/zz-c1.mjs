import { readFileSync } from 'node:fs';
import { loadConfig } from '@facegate/config';
import { FacePipeline, useAtomicGarbageCollection } from '@facegate/vision';
if (process.argv[2] === 'atomic') useAtomicGarbageCollection();
const config = loadConfig();
const p = await FacePipeline.create({ ...config, onnxThreads: Number(process.env.T ?? 2), onnxSpinning: process.env.SPIN !== '0' });
const img = readFileSync('/work/shared/peers/obama1_640x480.jpg');
const det = [], emb = [], tot = [];
for (let i = 0; i < 400; i++) {
  const copy = new Uint8Array(img);
  const t = performance.now();
  const r = await p.analyze(copy, {});
  const dt = performance.now() - t;
  if (i >= 30) { det.push(r.timings.detectMs); emb.push(r.timings.embedMs); tot.push(dt); }
  await new Promise((res) => setTimeout(res, 6));
}
const q = (a, f) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length * f)].toFixed(2); };
for (const [k, v] of [['detect', det], ['embed', emb], ['total', tot]]) console.log(process.argv[2] ?? 'default', k, 'p50', q(v, 0.5), 'p90', q(v, 0.9), 'p99', q(v, 0.99));
process.exit(0);
