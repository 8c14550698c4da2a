/**
 * A minimal reader of the ONNX protobuf: the model's `metadata_props` and its graph's input
 * and output declarations, read straight from the `.onnx` bytes (the JavaScript API of
 * onnxruntime does not expose `metadata_props`).
 *
 * Protobuf wire format: a message is a sequence of fields, each a varint key
 * `(field_number << 3) | wire_type` followed by its value: a varint (type 0), 8 bytes (1),
 * a varint length and that many bytes (2: strings, bytes, sub-messages, packed arrays) or
 * 4 bytes (5). Unknown fields are skipped, so newer ONNX files read as well as older ones.
 *
 * Field numbers (onnx/onnx.proto): ModelProto.graph = 7, ModelProto.metadata_props = 14;
 * StringStringEntryProto.key = 1, .value = 2; GraphProto.input = 11, .output = 12;
 * ValueInfoProto.name = 1, .type = 2; TypeProto.tensor_type = 1;
 * TypeProto.Tensor.elem_type = 1, .shape = 2; TensorShapeProto.dim = 1;
 * Dimension.dim_value = 1, .dim_param = 2.
 *
 * @module onnx-proto
 */

const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const FIXED32 = 5;

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Thrown for bytes that are not a well-formed protobuf message. */
export class ProtobufError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ProtobufError';
  }
}

/**
 * Calls `visit(field, wireType, value)` for each field of the message in `bytes[start, end)`;
 * `value` is a Number for varints (exact up to 2^53) and a `[from, to)` pair of offsets for
 * length-delimited fields; fixed-width fields are skipped.
 *
 * @param {Uint8Array} bytes
 * @param {number} start
 * @param {number} end
 * @param {(field: number, wireType: number, value: number | [number, number]) => void} visit
 */
export function readFields(bytes, start, end, visit) {
  let pos = start;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new ProtobufError(`truncated varint at byte ${pos}`);
      const b = bytes[pos++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
    throw new ProtobufError(`varint longer than 10 bytes at byte ${pos}`);
  };
  while (pos < end) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wireType = key % 8;
    if (field === 0) throw new ProtobufError(`field number 0 at byte ${pos}`);
    if (wireType === VARINT) {
      visit(field, wireType, varint());
    } else if (wireType === BYTES) {
      const length = varint();
      if (length > end - pos) {
        throw new ProtobufError(`field ${field} of ${length} bytes runs past the end (byte ${end})`);
      }
      visit(field, wireType, [pos, pos + length]);
      pos += length;
    } else if (wireType === FIXED64 || wireType === FIXED32) {
      pos += wireType === FIXED64 ? 8 : 4;
      if (pos > end) throw new ProtobufError(`truncated fixed-width field ${field}`);
    } else {
      throw new ProtobufError(`unsupported wire type ${wireType} (field ${field}) at byte ${pos}`);
    }
  }
}

function text(bytes, [from, to]) {
  return utf8.decode(bytes.subarray(from, to));
}

/**
 * ONNX TensorProto.DataType numbers of the element types a vision-tasks graph uses.
 * @type {Record<number, string>}
 */
export const ELEMENT_TYPES = { 1: 'float32', 2: 'uint8', 3: 'int8', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64' };

/**
 * @typedef {object} ValueInfo  A graph input or output as declared in the file.
 * @property {string} name
 * @property {string} type  element type (`uint8`, `float32`, `int64`, ...; `type<N>` when unknown)
 * @property {Array<number | string | null>} shape  a number per fixed dimension, the symbol
 *   (`"N"`) of a named one, `null` for an unnamed one
 */

function valueInfo(bytes, range) {
  /** @type {ValueInfo} */
  const info = { name: '', type: '', shape: [] };
  readFields(bytes, range[0], range[1], (field, wire, value) => {
    if (field === 1 && wire === BYTES) info.name = text(bytes, value);
    if (field !== 2 || wire !== BYTES) return;
    readFields(bytes, value[0], value[1], (tf, tw, tensor) => { // TypeProto
      if (tf !== 1 || tw !== BYTES) return;
      readFields(bytes, tensor[0], tensor[1], (f, w, v) => { // TypeProto.Tensor
        if (f === 1 && w === VARINT) info.type = ELEMENT_TYPES[v] ?? `type${v}`;
        if (f !== 2 || w !== BYTES) return;
        readFields(bytes, v[0], v[1], (df, dw, dim) => { // TensorShapeProto
          if (df !== 1 || dw !== BYTES) return;
          let size = null;
          readFields(bytes, dim[0], dim[1], (kf, kw, k) => {
            if (kf === 1 && kw === VARINT) size = k;
            if (kf === 2 && kw === BYTES) size = text(bytes, k);
          });
          info.shape.push(size);
        });
      });
    });
  });
  return info;
}

/**
 * @typedef {object} OnnxHeader  What {@link readOnnxHeader} finds in a model file.
 * @property {Record<string, string>} metadata  `metadata_props`: key -> value (text)
 * @property {ValueInfo[]} inputs  the graph's inputs (initializers excluded where the file lists them apart)
 * @property {ValueInfo[]} outputs  the graph's outputs, in graph order
 */

/**
 * Reads `metadata_props` and the graph's inputs and outputs from the bytes of an `.onnx`
 * file. Only the top-level message and the graph's input / output entries are parsed; the
 * weights are skipped by their length, so a large file costs little.
 *
 * @param {Uint8Array} bytes  the whole `.onnx` file
 * @returns {OnnxHeader}
 * @throws {ProtobufError} the bytes are not a protobuf message
 */
export function readOnnxHeader(bytes) {
  /** @type {Record<string, string>} */
  const metadata = {};
  const inputs = [];
  const outputs = [];
  let sawGraph = false;
  readFields(bytes, 0, bytes.length, (field, wire, value) => {
    if (field === 14 && wire === BYTES) {
      let key = '';
      let val = '';
      readFields(bytes, value[0], value[1], (f, w, v) => {
        if (f === 1 && w === BYTES) key = text(bytes, v);
        if (f === 2 && w === BYTES) val = text(bytes, v);
      });
      metadata[key] = val;
    } else if (field === 7 && wire === BYTES) {
      sawGraph = true;
      readFields(bytes, value[0], value[1], (f, w, v) => {
        if (f === 11 && w === BYTES) inputs.push(valueInfo(bytes, v));
        if (f === 12 && w === BYTES) outputs.push(valueInfo(bytes, v));
      });
    }
  });
  if (!sawGraph) throw new ProtobufError('no graph (ModelProto field 7): not an ONNX model');
  return { metadata, inputs, outputs };
}
