// The JavaScript client and the Python runtime (vision_tasks.export.runtime.Predictor) give
// the same results for the same model and images: four tasks, portrait and landscape images,
// the default score threshold and 0, with onnxruntime-node and onnxruntime-web (WASM).

import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { test } from 'node:test';
import { decodeRle, VisionModel } from '../src/node.js';
import { comparer } from './compare.js';
import { fixture, readJson, readPng } from './helpers.js';

const { compare, compareHeads } = comparer(decodeRle);

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
