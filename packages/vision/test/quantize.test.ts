import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import { FACES_MISSING, facesDir, loadConfig } from '@facegate/config';
import { FaceGateError } from '@facegate/errors';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';

import {
  FacePipeline,
  QuantizationError,
  calibratedTensorNames,
  cosineSimilarity,
  l2Normalize,
  manifestEntry,
  alignFace,
  int8WeightBits,
  quantizeModel,
  readCalibration,
  toEmbedderTensor,
} from '../src/index.js';

const { onnx } = onnxProto;
const faces = facesDir();
const skip = faces ? false : FACES_MISSING;
const config = loadConfig({});
const entry = manifestEntry('mobilefacenet_foamliu_128d_int8');
let floatBytes: Uint8Array;

before(async () => {
  floatBytes = await readFile(join(config.modelsDir, entry.file));
});

test('calibration covers every tensor', () => {
  const { ranges } = readCalibration(entry);

  const missing = calibratedTensorNames(floatBytes).filter((name) => !(name in ranges));

  assert.deepEqual(missing, []);
});

test('quantized graph has int8 convolutions', () => {
  const quantized = onnx.ModelProto.decode(
    quantizeModel(floatBytes, readCalibration(entry).ranges),
  );

  const graph = quantized.graph!;
  const producers = new Map(
    graph.node!.flatMap((node) => node.output!.map((name) => [name, node])),
  );
  const int8Initializers = new Set(
    graph
      .initializer!.filter((tensor) => tensor.dataType === onnx.TensorProto.DataType.INT8)
      .map((tensor) => tensor.name),
  );
  const convs = graph.node!.filter((node) => node.opType === 'Conv');
  const int8Convs = convs.filter((conv) => {
    const weight = producers.get(conv.input![1]!);
    return weight?.opType === 'DequantizeLinear' && int8Initializers.has(weight.input![0]);
  });
  // All 51 Convs read a quantized input; every Clip and Relu is folded into its Conv.
  assert.equal(convs.length, 51);
  assert.equal(int8Convs.length, convs.length);
  assert.equal(graph.node!.filter((node) => ['Clip', 'Relu'].includes(node.opType!)).length, 0);
  assert.ok(graph.node!.some((node) => node.opType === 'QuantizeLinear'));
});

test('weight bits follow the CPU', () => {
  assert.equal(int8WeightBits('x64', ' fpu avx2 fma avx512f avx512_vnni amx_int8'), 8);
  assert.equal(int8WeightBits('x64', ' fpu avx2 fma avx_vnni'), 8);
  assert.equal(int8WeightBits('x64', ' fpu avx2 fma avx512f avx512bw'), 7);
  assert.equal(int8WeightBits('x64', null), 7);
  assert.equal(int8WeightBits('arm64', null), 8);
});

test('7-bit weights stay within 63', () => {
  const { ranges } = readCalibration(entry);

  const int8Values = (weightBits: 7 | 8): Int8Array[] =>
    onnx.ModelProto.decode(quantizeModel(floatBytes, ranges, { weightBits }))
      .graph!.initializer!.filter((tensor) => tensor.dataType === onnx.TensorProto.DataType.INT8)
      .map((tensor) => new Int8Array(Uint8Array.from(tensor.rawData!).buffer));
  const largest = (arrays: Int8Array[]): number =>
    Math.max(...arrays.map((values) => Math.max(...values.map(Math.abs))));

  assert.equal(largest(int8Values(7)), 63);
  assert.equal(largest(int8Values(8)), 127);
});

test('quantization is deterministic', () => {
  const { ranges } = readCalibration(entry);

  const first = quantizeModel(floatBytes, ranges);
  const second = quantizeModel(floatBytes, ranges);

  assert.ok(Buffer.from(first).equals(Buffer.from(second)));
});

test('missing range names the tensor', () => {
  const ranges = { ...readCalibration(entry).ranges };
  delete ranges['/features/features.3/Add_output_0'];

  assert.throws(
    () => quantizeModel(floatBytes, ranges),
    (error: unknown) =>
      error instanceof QuantizationError &&
      /no range for tensor '\/features\/features\.3\/Add_output_0'/.test(error.message),
  );
});

test('calibration of another file is rejected', () => {
  const other = { ...entry, sha256: '0'.repeat(64) };

  assert.throws(
    () => readCalibration(other),
    (error: unknown) =>
      error instanceof FaceGateError &&
      error.code === 'MODEL_MISMATCH' &&
      /npm run calibrate/.test(error.message),
  );
});

test.describe('int8 against float embeddings', { skip }, () => {
  let floatPipeline: FacePipeline;
  let int8Pipeline: FacePipeline;

  before(async () => {
    floatPipeline = await FacePipeline.create(loadConfig({ FACE_EMBEDDER: 'mobilefacenet' }));
    int8Pipeline = await FacePipeline.create(loadConfig({ FACE_EMBEDDER: 'mobilefacenet_int8' }));
  });

  after(async () => {
    await Promise.all([floatPipeline?.close(), int8Pipeline?.close()]);
  });

  test('model ids differ', () => {
    assert.equal(floatPipeline.modelId, 'mobilefacenet_foamliu_128d');
    assert.equal(int8Pipeline.modelId, 'mobilefacenet_foamliu_128d_int8');
  });

  test('LFW faces embed alike but not identically', async () => {
    const people = ['Aaron_Peirsol', 'George_W_Bush', 'Serena_Williams', 'Tony_Blair'];
    const similarities: number[] = [];
    for (const person of people) {
      const dir = join(faces!, 'lfw', person);
      for (const file of (await readdir(dir)).sort().slice(0, 3)) {
        const bytes = await readFile(join(dir, file));
        const [floatFace] = (await floatPipeline.analyze(bytes)).faces;
        const [int8Face] = (await int8Pipeline.analyze(bytes)).faces;
        similarities.push(
          cosineSimilarity(floatFace!.embedding.vector, int8Face!.embedding.vector),
        );
      }
    }

    // Measured over all 7,701 faces of the LFW pairs, the lowest similarity was 0.984.
    assert.equal(similarities.length, 12);
    assert.ok(Math.min(...similarities) > 0.97, `lowest similarity ${Math.min(...similarities)}`);
    assert.ok(Math.max(...similarities) < 0.99999, 'the int8 embeddings equal the float ones');
  });

  test('7-bit weights embed alike', async () => {
    const image = await floatPipeline.decode(
      await readFile(join(faces!, 'lfw', 'Tony_Blair', 'Tony_Blair_0001.jpg')),
    );
    const [face] = await floatPipeline.detector.detect(image, floatPipeline.detectOptions());
    const input = toEmbedderTensor(alignFace(image, face!.landmarks), entry.preprocessing);
    const bytes = quantizeModel(floatBytes, readCalibration(entry).ranges, { weightBits: 7 });
    const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });

    const outputs = await session.run({
      input0: new ort.Tensor('float32', input, [1, 3, 112, 112]),
    });
    const int8Vector = l2Normalize(Float32Array.from(outputs.output0!.data as Float32Array));
    const [floatFace] = (
      await floatPipeline.analyze(
        await readFile(join(faces!, 'lfw', 'Tony_Blair', 'Tony_Blair_0001.jpg')),
      )
    ).faces;
    await session.release();

    // Over the 7,701 faces of the LFW pairs the lowest similarity with 7-bit weights was 0.969.
    const similarity = cosineSimilarity(floatFace!.embedding.vector, int8Vector);
    assert.ok(similarity > 0.95, `similarity ${similarity}`);
  });
});
