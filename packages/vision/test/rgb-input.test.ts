import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { FACES_MISSING, facesDir, loadConfig } from '@facegate/config';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';

import {
  decodeImage,
  manifestEntry,
  planDetectorInput,
  rgbInputContract,
  toDetectorPixels,
  withRgbInput,
} from '../src/index.js';

const { onnx } = onnxProto;
const faces = facesDir();
const skip = faces ? false : FACES_MISSING;
const config = loadConfig({});

test('rewritten YuNet matches the float model', { skip }, async () => {
  const entry = manifestEntry('yunet_2026may');
  const floatBytes = await readFile(join(config.modelsDir, entry.file));
  const image = await decodeImage(
    await readFile(join(faces!, 'lfw', 'Aaron_Peirsol', 'Aaron_Peirsol_0001.jpg')),
    { maxImageBytes: 10_000_000, maxImagePixels: 40_000_000 },
  );
  const { inputWidth, inputHeight } = planDetectorInput(image.width, image.height, 640);
  // The float model's input, built pixel by pixel: NCHW BGR planes, zero padding.
  const planes = new Float32Array(3 * inputWidth * inputHeight);
  for (let y = 0; y < image.height; y += 1) {
    for (let x = 0; x < image.width; x += 1) {
      const source = (y * image.width + x) * 3;
      const at = y * inputWidth + x;
      planes[at] = image.data[source + 2]!;
      planes[inputWidth * inputHeight + at] = image.data[source + 1]!;
      planes[2 * inputWidth * inputHeight + at] = image.data[source]!;
    }
  }
  const pixels = toDetectorPixels(image.data, image.width, image.height, inputWidth, inputHeight);
  const floatSession = await ort.InferenceSession.create(floatBytes);
  const rgbSession = await ort.InferenceSession.create(withRgbInput(floatBytes));

  const expected = await floatSession.run({
    input: new ort.Tensor('float32', planes, [1, 3, inputHeight, inputWidth]),
  });
  const actual = await rgbSession.run({
    input: new ort.Tensor('uint8', pixels, [1, inputHeight, inputWidth, 3]),
  });
  await Promise.all([floatSession.release(), rgbSession.release()]);

  assert.equal(inputWidth, 256);
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort());
  for (const name of Object.keys(expected)) {
    const want = expected[name]!.data as Float32Array;
    const got = actual[name]!.data as Float32Array;
    assert.deepEqual(actual[name]!.dims, expected[name]!.dims, name);
    let largest = 0;
    for (let i = 0; i < want.length; i += 1)
      largest = Math.max(largest, Math.abs(want[i]! - got[i]!));
    assert.ok(largest < 1e-4, `${name} differs by ${largest}`);
  }
});

test('rewritten input contract is NHWC uint8', () => {
  const contract = rgbInputContract({
    name: 'input',
    type: 'float32',
    shape: [1, 3, 'height', 'width'],
  });

  assert.deepEqual(contract, { name: 'input', type: 'uint8', shape: [1, 'height', 'width', 3] });
});

test('input feeding a Relu is rejected', () => {
  const tensorType = (dims: number[]) => ({
    tensorType: {
      elemType: onnx.TensorProto.DataType.FLOAT,
      shape: { dim: dims.map((dimValue) => ({ dimValue })) },
    },
  });
  const model = onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 13 }],
      graph: {
        name: 'relu',
        input: [{ name: 'input', type: tensorType([1, 3, 4, 4]) }],
        output: [{ name: 'output', type: tensorType([1, 3, 4, 4]) }],
        node: [{ opType: 'Relu', name: 'relu', input: ['input'], output: ['output'] }],
      },
    }),
  ).finish();

  assert.throws(() => withRgbInput(model), /feeds a Relu node 'relu'/);
});
