// The metadata is read from the ONNX bytes and checked as the Python runtime checks it; bad
// files give one clear error naming the file.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ModelFileError, OUTPUT_SPECS, readOnnxHeader, VisionModel } from '../src/node.js';
import { fixture } from './helpers.js';

// A protobuf writer just big enough to make ONNX files for the tests.
const varint = (n) => {
  const out = [];
  do { out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n = Math.floor(n / 128); } while (n > 0);
  return out;
};
const bytes = (field, payload) => [...varint(field * 8 + 2), ...varint(payload.length), ...payload];
const str = (field, text) => bytes(field, [...new TextEncoder().encode(text)]);
const num = (field, n) => [...varint(field * 8), ...varint(n)];
const valueInfo = (name, type, shape) => str(1, name).concat(bytes(2, bytes(1, [...num(1, type),
  ...bytes(2, shape.flatMap((d) => bytes(1, typeof d === 'number' ? num(1, d) : str(2, d))))])));

const META = {
  task: 'detect', class_names: ['a', 'b'], input_size: [64, 64], layout: 'NHWC', color: 'RGB',
  dtype: 'uint8', letterbox: { pad_value: 114, align: 'center' },
  outputs: ['boxes', 'scores', 'labels', 'num_detections'], thresholds: { score: 0.001, iou: 0.6 },
  max_detections: 100, contract_version: 1, package_version: '0.1.0', config: {},
};

// Each output as an exporter declares it: element type 1 (float32) or 7 (int64) and the
// contract's shape, `C` and `K` from the metadata of its head, `N` and the mask grid symbolic.
function declared(meta, name) {
  const [head, output] = name.includes('.') ? name.split('.') : ['', name];
  const m = head ? meta.heads?.[head] : meta;
  const spec = OUTPUT_SPECS[m?.task]?.[output];
  if (!spec) return [name, 1, ['N']]; // metadata the loader refuses before it looks at outputs
  const [type, shape] = spec;
  const sizes = { C: m.class_names.length, K: m.max_detections ?? 'K' };
  return [name, type === 'int64' ? 7 : 1, shape.map((d) => (typeof d === 'number' ? d : sizes[d] ?? d))];
}

function onnx(meta = META, input = ['images', 2, ['N', 64, 64, 3]], outputs = META.outputs, graphMeta = meta) {
  const graph = [...bytes(11, valueInfo(...input)),
    ...outputs.flatMap((o) => bytes(12, valueInfo(...declared(graphMeta, o))))];
  const props = Object.entries(meta).flatMap(([k, v]) => bytes(14, [...str(1, k), ...str(2, JSON.stringify(v))]));
  return Uint8Array.from([...num(1, 9), ...str(2, 'pytorch'), ...bytes(7, graph), ...props]);
}

const loadError = async (data, pattern) => {
  await assert.rejects(VisionModel.load(data, { ort: {} }), (err) => {
    assert.ok(err instanceof ModelFileError, `${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    return true;
  });
};

test('readOnnxHeader reads metadata_props and the graph input and outputs of an exported file', () => {
  const header = readOnnxHeader(new Uint8Array(readFileSync(fixture('segment.onnx'))));
  assert.equal(JSON.parse(header.metadata.task), 'segment');
  assert.equal(JSON.parse(header.metadata.contract_version), 1);
  assert.deepEqual(header.inputs, [{ name: 'images', type: 'uint8', shape: ['batch', 64, 64, 3] }]);
  assert.deepEqual(header.outputs.map((o) => o.name), ['boxes', 'scores', 'labels', 'num_detections', 'masks']);
  assert.deepEqual(header.outputs[4].shape, ['batch', 100, 16, 16]);
});

test('the metadata of a written file reads back', () => {
  const header = readOnnxHeader(onnx());
  assert.deepEqual(Object.fromEntries(Object.entries(header.metadata).map(([k, v]) => [k, JSON.parse(v)])), META);
});

test('a file that is no ONNX model, or no vision-tasks model, says so', async () => {
  await loadError(new Uint8Array([0x0a, 0xff, 0x01]), /<bytes>: not an ONNX model/);
  await loadError(new TextEncoder().encode('hello world'), /not an ONNX model/);
  await loadError(onnx({ foo: 1 }), /not a vision-tasks model/);
  await loadError('/no/such/model.onnx', /\/no\/such\/model.onnx: cannot read the file \(ENOENT\); export one/);
});

test('a newer contract, a missing key or a bad value is one clear error', async () => {
  await loadError(onnx({ ...META, contract_version: 3 }), /contract version 3 is newer than this client understands \(2\)/);
  const { config, ...noConfig } = META;
  await loadError(onnx(noConfig), /incomplete vision-tasks metadata \(missing config\)/);
  await loadError(onnx({ ...META, layout: 'NCHW' }), /metadata 'layout' should be "NHWC", got "NCHW"/);
  await loadError(onnx({ ...META, input_size: [64] }), /'input_size' should be \[height, width\]/);
  await loadError(onnx({ ...META, task: 'count' }), /a 'count' model, a task this JavaScript client does not decode/);
});

test('a graph that does not match its metadata is refused', async () => {
  await loadError(onnx(META, ['images', 1, ['N', 64, 64, 3]]), /graph input is images float32 \[N, 64, 64, 3\]; the contract expects 'images' uint8 \[N, 64, 64, 3\]/);
  await loadError(onnx(META, undefined, ['boxes', 'scores']), /lack labels, num_detections of the detect contract/);
});

test('metadata that does not describe its graph is refused, as the Python runtime refuses it', async () => {
  const graphOf = (changes) => onnx({ ...META, ...changes }, undefined, META.outputs, META);
  await loadError(graphOf({ max_detections: 7 }), /output 'boxes' has size 100 where its metadata says max_detections 7; the metadata does not describe this graph/);
  await loadError(graphOf({ category_ids: [1] }), /'category_ids' should be one integer per class name \(2\)/);
  await loadError(graphOf({ thresholds: { score: 'high' } }), /'thresholds' should be a mapping of names to numbers in \[0, 1\]/);
  const cls = { ...META, task: 'classify', outputs: ['scores'], max_detections: null };
  await loadError(onnx({ ...cls, class_names: ['a', 'b', 'c'] }, undefined, ['scores'], cls),
    /output 'scores' has size 2 where its metadata says 3 classes in class_names/);
  const int32 = Uint8Array.from([...num(1, 9), ...bytes(7, [...bytes(11, valueInfo('images', 2, ['N', 64, 64, 3])),
    ...bytes(12, valueInfo('scores', 6, ['N', 2]))]),
  ...Object.entries(cls).flatMap(([k, v]) => bytes(14, [...str(1, k), ...str(2, JSON.stringify(v))]))]);
  await loadError(int32, /output 'scores' is int32, the contract says float32/);
});

test('a multi-head file (contract 2) reads with each head\'s outputs under its name', async () => {
  const heads = { cls: { task: 'classify', class_names: ['x', 'y'], outputs: ['scores'], thresholds: {}, max_detections: null },
    det: { ...META, outputs: META.outputs } };
  const meta = { ...META, task: 'multi', class_names: [], contract_version: 2, heads,
    outputs: ['cls.scores', ...META.outputs.map((o) => `det.${o}`)] };
  await assert.rejects(VisionModel.load(onnx(meta, undefined, meta.outputs), { ort: { InferenceSession: { create: async () => { throw new Error('reached the session'); } } } }),
    /reached the session/);
  await loadError(onnx(meta, undefined, meta.outputs.slice(1)), /lack cls.scores of the classify contract \(head cls\)/);
});
