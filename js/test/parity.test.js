// The JavaScript client and the Python runtime (vision_tasks.export.runtime.Predictor) give
// the same results for the same model and images: four tasks, portrait and landscape images,
// the default score threshold and 0, with onnxruntime-node and onnxruntime-web (WASM).

import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { test } from 'node:test';
import { decodeRle, VisionModel } from '../src/index.js';
import { fixture, readJson, readPng } from './helpers.js';

const BOX_TOLERANCE = 0.5; // px, original image
const SCORE_TOLERANCE = 1e-4;
const MIN_MASK_IOU = 0.99;

function iou(a, b) {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    inter += a[i] & b[i];
    union += a[i] | b[i];
  }
  return union === 0 ? 1 : inter / union;
}

/** Compares one image's results; returns the largest differences seen. */
function compare(got, want, where) {
  const stats = { box: 0, score: 0, iou: 1, exactMasks: 0, masks: 0, detections: 0 };
  assert.equal(got.task, want.task, where);
  assert.equal(got.width, want.width, where);
  assert.equal(got.height, want.height, where);
  if (want.top) {
    assert.equal(got.label, want.label, `${where}: top class`);
    assert.deepEqual(got.top.map((c) => c.label), want.top.map((c) => c.label), `${where}: class order`);
    got.top.forEach((c, k) => {
      stats.score = Math.max(stats.score, Math.abs(c.score - want.top[k].score));
    });
  }
  assert.equal(Boolean(got.detections), Boolean(want.detections), `${where}: detections or not`);
  if (!want.detections) return stats;
  assert.equal(got.detections.length, want.detections.length, `${where}: number of detections`);
  // Rows come sorted by score: the same row normally, but scores within the tolerance may
  // swap places between runtimes, so a row is matched to any unmatched one that agrees.
  const agrees = (d, w) => d.label === w.label && Math.abs(d.score - w.score) <= SCORE_TOLERANCE &&
    d.box.every((v, j) => Math.abs(v - w.box[j]) <= BOX_TOLERANCE);
  const used = new Set();
  want.detections.forEach((w, k) => {
    const at = `${where}, detection ${k}`;
    const j = !used.has(k) && agrees(got.detections[k], w) ? k
      : got.detections.findIndex((d, i) => !used.has(i) && agrees(d, w));
    assert.ok(j >= 0, `${at}: no detection like Python's ${JSON.stringify({ ...w, mask: undefined })} ` +
      `(row ${k} is ${JSON.stringify({ ...got.detections[k], mask: undefined })})`);
    used.add(j);
    const d = got.detections[j];
    assert.equal(d.name, w.name, `${at}: class name`);
    stats.box = Math.max(stats.box, ...d.box.map((v, i) => Math.abs(v - w.box[i])));
    stats.score = Math.max(stats.score, Math.abs(d.score - w.score));
    assert.equal(Boolean(d.mask), Boolean(w.mask), `${at}: mask or not`);
    if (w.mask) {
      assert.deepEqual(d.mask.size, w.mask.size, `${at}: mask size`);
      const overlap = iou(decodeRle(d.mask), decodeRle(w.mask));
      stats.iou = Math.min(stats.iou, overlap);
      stats.masks++;
      if (d.mask.counts === w.mask.counts) stats.exactMasks++;
    }
    stats.detections++;
  });
  assert.ok(stats.box <= BOX_TOLERANCE, `${where}: a box differs by ${stats.box} px`);
  assert.ok(stats.score <= SCORE_TOLERANCE, `${where}: a score differs by ${stats.score}`);
  assert.ok(stats.iou >= MIN_MASK_IOU, `${where}: a mask's IoU with Python's is ${stats.iou}`);
  return stats;
}

/** Compares one image's results head by head for a multi-head model (each head's fields under its name). */
function compareHeads(got, want, where) {
  const heads = Object.keys(want).filter((k) => !['source', 'task', 'width', 'height'].includes(k));
  assert.deepEqual(Object.keys(got), Object.keys(want), `${where}: keys`);
  const all = heads.map((h) => compare({ ...got[h], width: got.width, height: got.height },
    { ...want[h], width: want.width, height: want.height }, `${where}, head ${h}`));
  return all.reduce((a, s) => ({ box: Math.max(a.box, s.box), score: Math.max(a.score, s.score), iou: Math.min(a.iou, s.iou),
    exactMasks: a.exactMasks + s.exactMasks, masks: a.masks + s.masks, detections: a.detections + s.detections }));
}

for (const task of ['classify', 'localize', 'detect', 'segment', 'multi']) {
  const expected = readJson('expected', `${task}.json`);
  const images = expected.images.map((name) => ({ ...readPng(fixture('images', name)), source: name }));
  for (const backend of ['node', 'wasm']) {
    test(`${task} on ${backend}: the Python Predictor's classes, boxes, scores and masks`, async (t) => {
      for (const [threshold, results] of Object.entries(expected.results)) {
        const model = await VisionModel.load(fixture(`${task}.onnx`), { backend, scoreThreshold: Number(threshold), threads: 1 });
        assert.equal(model.task, task);
        const predictions = await model.predict(images);
        const total = { box: 0, score: 0, iou: 1, exactMasks: 0, masks: 0, detections: 0 };
        predictions.forEach((p, i) => {
          const got = p.toDict();
          assert.equal(got.source, images[i].source);
          const want = { ...results[i], source: basename(results[i].source) };
          const s = (task === 'multi' ? compareHeads : compare)(got, want, `${images[i].source} at ${threshold}`);
          total.box = Math.max(total.box, s.box);
          total.score = Math.max(total.score, s.score);
          total.iou = Math.min(total.iou, s.iou);
          for (const k of ['exactMasks', 'masks', 'detections']) total[k] += s[k];
        });
        t.diagnostic(`threshold ${threshold}: ${total.detections} detections, largest box difference ` +
          `${total.box.toFixed(4)} px, score ${total.score.toExponential(1)}` +
          (total.masks ? `, masks: ${total.exactMasks}/${total.masks} identical, lowest IoU ${total.iou.toFixed(4)}` : ''));
        await model.dispose();
      }
    });
  }
}

test('one image gives one prediction, shaped like Python\'s to_dict()', async () => {
  const model = await VisionModel.load(fixture('segment.onnx'));
  const image = readPng(fixture('images', 'portrait.png'));
  const prediction = await model.predict(image);
  assert.equal(prediction.source, '<pixels>');
  const dict = JSON.parse(JSON.stringify(prediction));
  assert.deepEqual(Object.keys(dict), ['source', 'task', 'width', 'height', 'detections']);
  for (const d of dict.detections) assert.deepEqual(Object.keys(d), ['box', 'label', 'name', 'score', 'mask']);
  assert.ok(prediction.detections.every((d) => d.score >= 0.25));
  await model.dispose();
});
