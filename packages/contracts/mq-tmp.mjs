import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { readFileSync } from 'node:fs';
const N = 3000;
import { execSync } from 'node:child_process';
const rpid = execSync('pgrep -x redis-server').toString().trim().split('\n')[0];
const rcpu = () => { const f = readFileSync(`/proc/${rpid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10; };
const payload = { kind: 'identify', correlationId: 'x', replyTo: 'chan', faces: [{ embedding: 'A'.repeat(684), box: { x: 1, y: 2, width: 3, height: 4 }, landmarks: [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], score: 0.9 }], params: {}, timings: { a: 1 } };
async function bull() {
  const conn = new Redis({ maxRetriesPerRequest: null });
  const q = new Queue('mqbench', { connection: conn, prefix: 'mqbench' });
  let done = 0; let resolve; const finished = new Promise((r) => (resolve = r));
  const w = new Worker('mqbench', async () => { if (++done === N) resolve(); }, { connection: new Redis({ maxRetriesPerRequest: null }), prefix: 'mqbench', concurrency: 4 });
  await w.waitUntilReady();
  const c0 = process.cpuUsage(), r0 = rcpu(), t0 = performance.now();
  for (let i = 0; i < N; i++) { await q.add('identify', payload, { removeOnComplete: true, attempts: 2 }); }
  await finished;
  const c = process.cpuUsage(c0);
  console.log('bullmq  node cpu ms/job', ((c.user + c.system) / 1000 / N).toFixed(3), 'redis ms/job', ((rcpu() - r0) / N).toFixed(3), 'wall ms/job', ((performance.now() - t0) / N).toFixed(3));
  await w.close(); await q.obliterate({ force: true }); await q.close(); conn.disconnect();
}
async function list() {
  const a = new Redis(), b = new Redis();
  let done = 0; let resolve; const finished = new Promise((r) => (resolve = r));
  (async () => { while (done < N) { const r = await b.brpop('mqbench:list', 1); if (r) { JSON.parse(r[1]); if (++done === N) resolve(); } } })();
  const c0 = process.cpuUsage(), r0 = rcpu(), t0 = performance.now();
  for (let i = 0; i < N; i++) await a.lpush('mqbench:list', JSON.stringify(payload));
  await finished;
  const c = process.cpuUsage(c0);
  console.log('list    node cpu ms/job', ((c.user + c.system) / 1000 / N).toFixed(3), 'redis ms/job', ((rcpu() - r0) / N).toFixed(3), 'wall ms/job', ((performance.now() - t0) / N).toFixed(3));
  a.disconnect(); b.disconnect();
}
await bull(); await list(); await bull(); await list();
