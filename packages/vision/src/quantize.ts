/**
 * Static int8 quantization of an ONNX convolutional model in the QDQ format, done in memory
 * when the model is loaded, so that only the float file is ever fetched or verified. The
 * activation ranges come from a calibration file measured on real photos by
 * benchmarks/src/calibrate.ts. onnxruntime fuses the QuantizeLinear/DequantizeLinear pairs
 * around each Conv and Add into QLinearConv and QLinearAdd.
 *
 * Scope: the operators of MobileFaceNet (Conv, Clip, Relu, Add, Reshape, Constant). Any other
 * operator stays in float, and a tensor without a calibrated range is an error.
 */
import {
  FLOAT,
  type Graph,
  INT32,
  INT8,
  type Model,
  ModelGraphError,
  type Node,
  type Tensor,
  consumersOf,
  decodeModel,
  encodeModel,
  floatData,
  floatTensor,
  node,
  onnx,
  producersOf,
  rawTensor,
  uint8Tensor,
} from './onnx-graph.js';

export interface QuantizeOptions {
  /**
   * Bits of the int8 weights, 8 (default) or 7. Without VNNI, x86 CPUs multiply uint8 by
   * int8 with an instruction (VPMADDUBSW) that saturates at 16 bits when two large
   * products add up, and 7-bit weights keep every such sum in range (onnxruntime's
   * quantization documentation gives the same advice).
   */
  weightBits?: 7 | 8;
}

/** The range of values one tensor took over the calibration photos. */
export interface TensorRange {
  min: number;
  max: number;
}

/** Operators whose output can be calibrated and kept in uint8 between layers. */
const CALIBRATED_OPERATORS = new Set(['Conv', 'Relu', 'Clip', 'Add']);
/** Consumers that take a quantized input directly (activations are folded into the Conv). */
const QUANTIZED_CONSUMERS = new Set(['Conv', 'Add', 'Relu', 'Clip']);
/** QuantizeLinear with a per-channel axis needs opset 13 of the default domain. */
const MIN_OPSET = 13;

export class QuantizationError extends ModelGraphError {
  override name = 'QuantizationError';
}

/**
 * Adds the output of every Conv, Relu, Clip and Add node as a graph output, so that one run
 * returns every tensor that quantizeModel needs a range for. Returns the model bytes and the
 * names of the added outputs.
 */
export function exposeCalibratedTensors(modelBytes: Uint8Array): {
  modelBytes: Uint8Array;
  names: string[];
} {
  const model = decodeModel(modelBytes);
  const graph = requireGraph(model);
  const present = new Set(graph.output.map((output) => output.name));
  const names: string[] = [];
  for (const node of graph.node) {
    if (!CALIBRATED_OPERATORS.has(node.opType)) continue;
    for (const name of node.output) {
      if (present.has(name)) continue;
      present.add(name);
      names.push(name);
      graph.output.push(
        onnx.ValueInfoProto.create({
          name,
          type: { tensorType: { elemType: FLOAT } },
        }) as { name: string },
      );
    }
  }
  return { modelBytes: encodeModel(model), names };
}

/** Names of the tensors whose range quantizeModel reads: the first input and exposed outputs. */
export function calibratedTensorNames(modelBytes: Uint8Array): string[] {
  const graph = requireGraph(decodeModel(modelBytes));
  return [graph.input[0]!.name, ...exposeCalibratedTensors(modelBytes).names];
}

/**
 * Returns the model in QDQ form: uint8 activations (asymmetric, per tensor) and int8 weights
 * (symmetric, per output channel) for every Conv whose input is quantized, int32 biases, and
 * Relu and Clip(0, x) folded into the Conv before them. The last Conv before a non-quantized
 * consumer keeps a float output, so the embedding itself is not rounded to 8 bits.
 */
export function quantizeModel(
  modelBytes: Uint8Array,
  ranges: Readonly<Record<string, TensorRange>>,
  options: QuantizeOptions = {},
): Uint8Array {
  const weightBits = options.weightBits ?? 8;
  const model = decodeModel(modelBytes);
  const graph = requireGraph(model);
  raiseOpset(model);
  const rangeOf = (name: string): TensorRange => {
    const range = ranges[name];
    if (!range || !Number.isFinite(range.min) || !Number.isFinite(range.max)) {
      throw new QuantizationError(`the calibration has no range for tensor '${name}'`);
    }
    return range;
  };

  // 1. Fold each Relu or Clip(0, x) into the Conv before it: a uint8 output with its zero
  //    point at 0 clamps negative values, which is what the activation does.
  const foldedRanges = foldActivations(graph, rangeOf);

  // 2. Choose the tensors to carry in uint8: the input, and each Conv or Add output that only
  //    quantized operators consume.
  const consumers = consumersOf(graph);
  const chosen = new Map<string, QuantParams>();
  const choose = (name: string): void => {
    chosen.set(name, quantParams(foldedRanges.get(name) ?? rangeOf(name)));
  };
  choose(graph.input[0]!.name);
  for (const node of graph.node) {
    if (node.opType !== 'Conv' && node.opType !== 'Add') continue;
    const name = node.output[0]!;
    const users = consumers.get(name) ?? [];
    if (users.length > 0 && users.every((user) => QUANTIZED_CONSUMERS.has(user.opType))) {
      choose(name);
    }
  }

  // 3. Insert a QuantizeLinear/DequantizeLinear pair after each chosen tensor and point its
  //    consumers at the dequantized copy. Graph outputs keep their float name.
  const added: Node[] = [];
  for (const [name, params] of chosen) {
    const scaleName = `${name}_scale`;
    const zeroName = `${name}_zero_point`;
    graph.initializer.push(
      floatTensor(scaleName, [], [params.scale]),
      uint8Tensor(zeroName, [params.zeroPoint]),
    );
    added.push(
      node('QuantizeLinear', [name, scaleName, zeroName], [`${name}_quantized`]),
      node('DequantizeLinear', [`${name}_quantized`, scaleName, zeroName], [`${name}_dequantized`]),
    );
  }
  for (const each of graph.node) {
    each.input = each.input.map((input) => (chosen.has(input) ? `${input}_dequantized` : input));
  }

  // 4. Quantize the weights and biases of every Conv that now reads a quantized input.
  const initializers = new Map(graph.initializer.map((tensor) => [tensor.name, tensor]));
  const constants = constantValues(graph);
  for (const conv of graph.node) {
    if (conv.opType !== 'Conv' || !conv.input[0]!.endsWith('_dequantized')) continue;
    const inputScale = chosen.get(conv.input[0]!.slice(0, -'_dequantized'.length))!.scale;
    added.push(
      ...quantizeConvParameters(conv, inputScale, weightBits, initializers, constants, graph),
    );
  }

  graph.node = sortTopologically([...graph.node, ...added], graph);
  removeUnused(graph);
  return encodeModel(model);
}

interface QuantParams {
  scale: number;
  zeroPoint: number;
}

/** Asymmetric uint8 parameters for a range, widened to include 0 as ONNX requires. */
function quantParams(range: TensorRange): QuantParams {
  const low = Math.min(range.min, 0);
  const high = Math.max(range.max, 0);
  const scale = high > low ? Math.fround((high - low) / 255) : 1;
  const zeroPoint = Math.min(255, Math.max(0, Math.round(-low / scale)));
  return { scale, zeroPoint };
}

function foldActivations(
  graph: Graph,
  rangeOf: (name: string) => TensorRange,
): Map<string, TensorRange> {
  const folded = new Map<string, TensorRange>();
  const consumers = consumersOf(graph);
  const producers = producersOf(graph);
  const outputs = new Set(graph.output.map((output) => output.name));
  const constants = constantValues(graph);
  const kept: Node[] = [];
  for (const activation of graph.node) {
    const source = activation.input[0];
    const conv = source === undefined ? undefined : producers.get(source);
    const foldable =
      (activation.opType === 'Relu' || activation.opType === 'Clip') &&
      conv?.opType === 'Conv' &&
      consumers.get(source!)?.length === 1 &&
      !outputs.has(source!);
    const upper = foldable ? activationUpperBound(activation, constants) : undefined;
    if (!foldable || upper === undefined) {
      kept.push(activation);
      continue;
    }
    const measured = rangeOf(activation.output[0]!);
    conv.output[0] = activation.output[0]!;
    folded.set(activation.output[0]!, { min: 0, max: Math.min(measured.max, upper) });
  }
  graph.node = kept;
  return folded;
}

/** Returns the upper bound of a Relu (infinity) or of a Clip whose lower bound is 0, else undefined. */
function activationUpperBound(
  activation: Node,
  constants: Map<string, Float32Array>,
): number | undefined {
  if (activation.opType === 'Relu') return Number.POSITIVE_INFINITY;
  const lower = activation.input[1] ? constants.get(activation.input[1])?.[0] : undefined;
  if (lower !== 0) return undefined;
  const upper = activation.input[2] ? constants.get(activation.input[2])?.[0] : undefined;
  return upper ?? Number.POSITIVE_INFINITY;
}

/** Quantizes the weights (int8 per output channel) and bias (int32) of one Conv and returns the nodes that dequantize them. */
function quantizeConvParameters(
  conv: Node,
  inputScale: number,
  weightBits: 7 | 8,
  initializers: Map<string, Tensor>,
  constants: Map<string, Float32Array>,
  graph: Graph,
): Node[] {
  const weightName = conv.input[1]!;
  const weightTensor = initializers.get(weightName);
  if (!weightTensor) {
    throw new QuantizationError(
      `Conv '${conv.name}' has no initializer for weight '${weightName}'`,
    );
  }
  const weights = floatData(weightTensor);
  const dims = weightTensor.dims.map((dim) => (typeof dim === 'number' ? dim : dim.toNumber()));
  const channels = dims[0]!;
  const perChannel = weights.length / channels;

  // Symmetric per output channel: scale = max |w| / 127 (63 for 7 bits).
  const weightMax = 2 ** (weightBits - 1) - 1;
  const weightScales = new Float32Array(channels);
  const quantized = new Int8Array(weights.length);
  for (let channel = 0; channel < channels; channel += 1) {
    let maxAbs = 0;
    for (let i = channel * perChannel; i < (channel + 1) * perChannel; i += 1) {
      maxAbs = Math.max(maxAbs, Math.abs(weights[i]!));
    }
    const scale = maxAbs > 0 ? Math.fround(maxAbs / weightMax) : 1e-8;
    weightScales[channel] = scale;
    for (let i = channel * perChannel; i < (channel + 1) * perChannel; i += 1) {
      quantized[i] = Math.max(-weightMax, Math.min(weightMax, Math.round(weights[i]! / scale)));
    }
  }
  const nodes = [
    dequantizePerChannel(graph, `${weightName}_int8`, dims, INT8, quantized, weightScales),
  ];
  conv.input[1] = nodes[0]!.output[0]!;

  // The bias becomes int32 with scale inputScale * weightScale, as QLinearConv expects.
  const biasName = conv.input[2];
  if (biasName) {
    const bias = initializers.get(biasName)
      ? floatData(initializers.get(biasName)!)
      : constants.get(biasName);
    if (!bias)
      throw new QuantizationError(`Conv '${conv.name}' has no value for bias '${biasName}'`);
    const biasScales = Array.from(weightScales, (scale) => Math.fround(inputScale * scale));
    const biasValues = Int32Array.from(bias, (value, channel) =>
      Math.round(value / biasScales[channel]!),
    );
    nodes.push(
      dequantizePerChannel(graph, `${biasName}_int32`, [channels], INT32, biasValues, biasScales),
    );
    conv.input[2] = nodes[1]!.output[0]!;
  }
  return nodes;
}

/**
 * Stores integer values with one scale per output channel (axis 0) and a zero point of 0,
 * and returns the DequantizeLinear node that turns them back into floats.
 */
function dequantizePerChannel(
  graph: Graph,
  name: string,
  dims: number[],
  dataType: number,
  values: Int8Array | Int32Array,
  scales: ArrayLike<number>,
): Node {
  const channels = dims[0]!;
  const zeroPoints = dataType === INT8 ? new Int8Array(channels) : new Int32Array(channels);
  graph.initializer.push(
    rawTensor(name, dims, dataType, values),
    floatTensor(`${name}_scale`, [channels], scales),
    rawTensor(`${name}_zero_point`, [channels], dataType, zeroPoints),
  );
  return node(
    'DequantizeLinear',
    [name, `${name}_scale`, `${name}_zero_point`],
    [`${name}_dequantized`],
    { axis: 0 },
  );
}

function requireGraph(model: Model): Graph {
  const graph = model.graph;
  if (!graph || graph.input.length === 0)
    throw new QuantizationError('the model has no graph input');
  return graph;
}

function raiseOpset(model: Model): void {
  for (const opset of model.opsetImport) {
    const version = typeof opset.version === 'number' ? opset.version : opset.version.toNumber();
    if (opset.domain === '' && version < MIN_OPSET) opset.version = MIN_OPSET;
  }
}

/** Values of the graph's float Constant nodes, by output name. */
function constantValues(graph: Graph): Map<string, Float32Array> {
  const values = new Map<string, Float32Array>();
  for (const each of graph.node) {
    if (each.opType !== 'Constant') continue;
    const tensor = each.attribute.find((attribute) => attribute.name === 'value')?.t;
    if (tensor && tensor.dataType === FLOAT) {
      values.set(each.output[0]!, floatData(tensor));
    }
  }
  return values;
}

/**
 * Removes the float weights that were replaced and the Constant nodes of folded activations,
 * which onnxruntime would otherwise report with a warning each time it loads the model.
 */
function removeUnused(graph: Graph): void {
  const used = new Set<string>(graph.output.map((output) => output.name));
  for (const each of graph.node) for (const input of each.input) used.add(input);
  graph.node = graph.node.filter(
    (each) => each.opType !== 'Constant' || each.output.some((output) => used.has(output)),
  );
  graph.initializer = graph.initializer.filter((tensor) => used.has(tensor.name));
}

/** Orders nodes so that each runs after the producers of its inputs, as ONNX requires. */
function sortTopologically(nodes: Node[], graph: Graph): Node[] {
  const available = new Set<string>([
    '',
    ...graph.input.map((input) => input.name),
    ...graph.initializer.map((tensor) => tensor.name),
  ]);
  const sorted: Node[] = [];
  let pending = nodes;
  while (pending.length > 0) {
    const blocked: Node[] = [];
    for (const each of pending) {
      if (each.input.every((input) => available.has(input))) {
        sorted.push(each);
        for (const output of each.output) available.add(output);
      } else {
        blocked.push(each);
      }
    }
    if (blocked.length === pending.length) {
      throw new QuantizationError(
        `the quantized graph has nodes whose inputs are never produced: ${blocked
          .slice(0, 3)
          .map((each) => each.name || each.opType)
          .join(', ')}`,
      );
    }
    pending = blocked;
  }
  return sorted;
}
