/**
 * Reading and writing ONNX models as protobuf messages, for the rewrites that the loader
 * applies to a verified model file before onnxruntime loads it (int8 quantization, the
 * detector's image input).
 */
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;

/** A model whose graph a rewrite cannot apply to, with the reason. */
export class ModelGraphError extends Error {
  override name = 'ModelGraphError';
}

// The fields of the decoded protobuf messages that these helpers read. Decoded messages always
// have them (repeated fields default to empty arrays, strings to ''), which the generated
// types, written for messages being built, leave optional.
export interface Tensor {
  name: string;
  dims: (number | { toNumber(): number })[];
  dataType: number;
  rawData: Uint8Array;
  floatData: number[];
}

export interface Node {
  opType: string;
  name: string;
  input: string[];
  output: string[];
  attribute: { name: string; t?: Tensor | null }[];
}

/** A graph input or output: its name, and its element type and shape where declared. */
export interface ValueInfo {
  name: string;
  type?: {
    tensorType?: {
      elemType: number;
      shape?: {
        dim: { dimValue?: number | { toNumber(): number } | null; dimParam?: string | null }[];
      } | null;
    } | null;
  } | null;
}

export interface Graph {
  node: Node[];
  input: ValueInfo[];
  output: { name: string }[];
  initializer: Tensor[];
}

export interface Model {
  graph?: Graph | null;
  opsetImport: { domain: string; version: number | { toNumber(): number } }[];
}

export function decodeModel(modelBytes: Uint8Array): Model {
  return onnx.ModelProto.decode(modelBytes) as unknown as Model;
}

export function encodeModel(model: Model): Uint8Array {
  return onnx.ModelProto.encode(model as unknown as onnxProto.onnx.IModelProto).finish();
}

/** TensorProto data types, as plain numbers to compare with decoded messages. */
export const FLOAT = onnx.TensorProto.DataType.FLOAT as number;
export const UINT8 = onnx.TensorProto.DataType.UINT8 as number;
export const INT8 = onnx.TensorProto.DataType.INT8 as number;
export const INT32 = onnx.TensorProto.DataType.INT32 as number;

export function consumersOf(graph: Graph): Map<string, Node[]> {
  const consumers = new Map<string, Node[]>();
  for (const each of graph.node) {
    for (const input of each.input) {
      if (!consumers.has(input)) consumers.set(input, []);
      consumers.get(input)!.push(each);
    }
  }
  return consumers;
}

export function producersOf(graph: Graph): Map<string, Node> {
  const producers = new Map<string, Node>();
  for (const each of graph.node) for (const output of each.output) producers.set(output, each);
  return producers;
}

export function floatData(tensor: Tensor): Float32Array {
  if (tensor.dataType !== FLOAT) {
    throw new ModelGraphError(
      `tensor '${tensor.name}' is of type ${tensor.dataType}, expected float`,
    );
  }
  if (tensor.rawData && tensor.rawData.length > 0) {
    // rawData is little-endian; copy it, because its offset may not be 4-byte aligned.
    const bytes = Uint8Array.from(tensor.rawData);
    return new Float32Array(bytes.buffer, 0, bytes.length / 4);
  }
  return Float32Array.from(tensor.floatData);
}

export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): Tensor {
  return rawTensor(name, dims, FLOAT, Float32Array.from(values));
}

export function uint8Tensor(name: string, values: number[]): Tensor {
  return rawTensor(name, [], UINT8, Uint8Array.from(values));
}

/**
 * Creates a tensor from the bytes of a typed array, which ONNX reads as little-endian: right on
 * little-endian hosts (x86, ARM) only.
 */
export function rawTensor(
  name: string,
  dims: number[],
  dataType: number,
  values: Float32Array | Int32Array | Int8Array | Uint8Array,
): Tensor {
  return onnx.TensorProto.create({
    name,
    dims,
    dataType,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  }) as unknown as Tensor;
}

/** Creates a node; each attribute is an integer or a list of integers. */
export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attributes: Record<string, number | number[]> = {},
): Node {
  const created = onnx.NodeProto.create({
    opType,
    name: `${outputs[0]!}_node`,
    input: inputs,
    output: outputs,
    attribute: Object.entries(attributes).map(([name, value]) =>
      onnx.AttributeProto.create(
        typeof value === 'number'
          ? { name, type: onnx.AttributeProto.AttributeType.INT, i: value }
          : { name, type: onnx.AttributeProto.AttributeType.INTS, ints: value },
      ),
    ),
  });
  return created as unknown as Node;
}
