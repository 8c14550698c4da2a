// Every kind of image a Node program holds gives the Python runtime's results for that image
// (paths, file: and http: URLs, Buffer, Uint8Array, ArrayBuffer, Blob, File, Response, a
// Promise, pixels); the ICC photo decodes to Python's sRGB pixels and results; bad inputs and
// out-of-range options are one-line errors.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { serve } from '../scripts/serve.js';
import { decodeImage, decodeRle, ImageError, ModelFileError, VisionModel } from '../src/node.js';
import { comparer, ICC } from './compare.js';
import { fixture, FIXTURES, readJson, readPng } from './helpers.js';

const { compare } = comparer(decodeRle);
const IMAGE = 'landscape.png';

test('every kind of image input gives the Python results of that image', async () => {
  const expected = readJson('expected', 'detect.json');
  const want = expected.results['0.25'][expected.images.indexOf(IMAGE)];
  const path = fixture('images', IMAGE);
  const bytes = readFileSync(path);
  const { server, url } = await serve(FIXTURES, { port: 0 });
  const model = await VisionModel.load(fixture('detect.onnx'), { threads: 1 });
  try {
    const kinds = {
      path, 'file: URL string': pathToFileURL(path).href, 'file: URL': pathToFileURL(path),
      'http: URL': `${url}images/${IMAGE}`, Buffer: bytes, Uint8Array: new Uint8Array(bytes),
      ArrayBuffer: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
      Blob: new Blob([bytes]), File: new File([bytes], IMAGE), Response: new Response(bytes),
      Promise: Promise.resolve(bytes), pixels: readPng(path),
    };
    const names = Object.keys(kinds);
    const predictions = await model.predict(Object.values(kinds));
    predictions.forEach((p, i) => compare({ ...p.toDict(), source: undefined }, { ...want, source: undefined }, names[i]));
    assert.deepEqual(predictions.map((p) => p.source), [path, pathToFileURL(path).href, pathToFileURL(path).href,
      `${url}images/${IMAGE}`, '<bytes>', '<bytes>', '<bytes>', '<Blob>', IMAGE, '<Response>', '<bytes>', '<pixels>']);
    // the model file, too, from bytes, a Response or a promise
    const again = await VisionModel.load(fetch(`${url}detect.onnx`), { threads: 1 });
    compare({ ...(await again.predict(bytes)).toDict(), source: undefined }, { ...want, source: undefined }, 'model from a Response');
    await again.dispose();
  } finally {
    await model.dispose();
    server.close();
  }
});

test('the ICC photo decodes to Python\'s sRGB pixels and gives Python\'s results', async () => {
  const expected = readJson('expected', 'icc.json');
  const bytes = new Uint8Array(readFileSync(fixture('images', expected.image)));
  const pixels = await decodeImage(bytes);
  const python = readFileSync(fixture('expected', 'icc.rgb'));
  assert.deepEqual([pixels.width, pixels.height, pixels.channels], [expected.width, expected.height, 3]);
  let worst = 0;
  for (let i = 0; i < python.length; i++) worst = Math.max(worst, Math.abs(pixels.data[i] - python[i]));
  assert.ok(worst <= 2, `sharp's sRGB pixels differ from Python's by ${worst} levels`);
  const { compare: near } = comparer(decodeRle, ICC);
  const { compareHeads } = comparer(decodeRle, ICC);
  for (const [task, results] of Object.entries(expected.results)) {
    const model = await VisionModel.load(fixture(`${task}.onnx`), { threads: 1, scoreThreshold: 0 });
    const got = (await model.predict(bytes)).toDict();
    (task === 'multi' ? compareHeads : near)({ ...got, source: '' }, { ...results['0.0'], source: '' }, `${task} on the ICC photo`);
    await model.dispose();
  }
});

/** Asserts that `promise` rejects with `kind` and a one-line message matching `pattern`. */
async function oneLine(promise, kind, pattern) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof kind, `${err.name}: ${err.message}`);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  });
}

test('bad images and out-of-range options are one-line errors naming them', async () => {
  const path = fixture('classify.onnx');
  await oneLine(VisionModel.load(path, { scoreThreshold: 2 }), RangeError, /^scoreThreshold must be in \[0, 1\], got 2$/);
  await oneLine(VisionModel.load(path, { scoreThreshold: '0.5' }), TypeError, /^scoreThreshold must be a number \(in \[0, 1\]\), got "0.5" \(string\)$/);
  await oneLine(VisionModel.load(path, { batchSize: 0 }), RangeError, /batchSize must be a positive integer, got 0/);
  await oneLine(VisionModel.load(path, { threads: 1.5 }), RangeError, /threads must be a positive integer/);
  await oneLine(VisionModel.load(path, { backend: 'gpu' }), RangeError, /backend must be one of node, wasm, webgpu, got "gpu"/);
  await oneLine(VisionModel.load(42), TypeError, /VisionModel.load takes a URL or path.*got Number/);
  await oneLine(VisionModel.load(new Response('nope', { status: 404 })), ModelFileError, /<Response>: cannot fetch it \(HTTP 404\)/);
  const model = await VisionModel.load(path, { threads: 1 });
  try {
    await oneLine(model.predict(fixture('images', IMAGE), { scoreThreshold: -1 }), RangeError, /scoreThreshold must be in \[0, 1\], got -1/);
    await oneLine(model.predict(42), TypeError, /^predict takes images \(a URL or path, encoded bytes .*\), got number$/);
    await oneLine(model.predict({ width: 3 }), TypeError, /predict takes images .*got Object/);
    await oneLine(model.predict(new Uint8Array([1, 2, 3])), ImageError, /^<bytes>: cannot decode the image \(.+\); check that it is an image file$/);
    await oneLine(model.predict(new Uint8Array(0)), ImageError, /<bytes>: empty data \(0 bytes\)/);
    await oneLine(model.predict('/no/such/photo.png'), ImageError, /^\/no\/such\/photo.png: cannot read the file \(ENOENT\); check the path$/);
    await oneLine(model.predict(Promise.resolve(null)), TypeError, /got null/);
    await oneLine(model.predict({ data: new Uint8Array(5), width: 2, height: 2, channels: 3 }), TypeError, /with width \* height \* channels bytes/);
  } finally {
    await model.dispose();
  }
});

test('the package version is the contract version it reads, as Python writes it', async () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const { CONTRACT_VERSION } = await import('../src/node.js');
  assert.equal(Number(pkg.version.split('.')[0]), CONTRACT_VERSION, 'package.json major version');
  assert.equal(readJson('contract.json').contract_version, CONTRACT_VERSION, 'the Python contract version');
});
