import { readFileSync } from 'node:fs';
import { Stack } from '@facegate/testing';
const stack = new Stack();
await stack.start({ workers: 2, env: { LOG_LEVEL: 'warn' } });
const bytes = readFileSync('/work/shared/peers/obama1_640x480.jpg');
const visitor = await (await fetch(`${stack.url}/api/v1/visitors`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'x' }) })).json();
await fetch(`${stack.url}/api/v1/visitors/${visitor.id}/faces`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bytes });
const rows = [];
for (let i = 0; i < 230; i++) {
  const t = performance.now();
  const res = await fetch(`${stack.url}/api/v1/recognize`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: bytes });
  const body = await res.json();
  const client = performance.now() - t;
  if (i >= 30) rows.push({ client, ...body.timings });
}
await stack.stopAll();
const keys = Object.keys(rows[0]);
for (const k of keys) { const v = rows.map((r) => r[k]).filter((x) => typeof x === 'number').sort((a, b) => a - b); console.log(k.padEnd(18), v[v.length >> 1]?.toFixed(2)); }
