import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
const threads = Number(process.argv[2]); const spin = process.argv[3];
const opts = { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', extra: { session: { 'intra_op.allow_spinning': spin } } };
const yunet = await ort.InferenceSession.create('/work/main/models/files/face_detection_yunet_2026may.onnx', opts);
const mfn = await ort.InferenceSession.create('/work/main/models/files/mobilefacenet_foamliu_128d.onnx', opts);
const y = { [yunet.inputNames[0]]: new ort.Tensor('float32', new Float32Array(3 * 480 * 640).fill(100), [1, 3, 480, 640]) };
const f = { [mfn.inputNames[0]]: new ort.Tensor('float32', new Float32Array(3 * 112 * 112).fill(0.1), [1, 3, 112, 112]) };
for (let i = 0; i < 20; i++) { await yunet.run(y); await mfn.run(f); }
const c0 = process.cpuUsage(); const t0 = performance.now(); const ys = [], ms = [];
for (let i = 0; i < 150; i++) { let t = performance.now(); await yunet.run(y); ys.push(performance.now() - t); t = performance.now(); await mfn.run(f); ms.push(performance.now() - t); }
const c = process.cpuUsage(c0); ys.sort((a, b) => a - b); ms.sort((a, b) => a - b);
console.log(`threads ${threads} spin ${spin}: yunet p50 ${ys[75].toFixed(2)} mfn p50 ${ms[75].toFixed(2)} cpu ms/iter ${((c.user + c.system) / 1000 / 150).toFixed(2)}`);
