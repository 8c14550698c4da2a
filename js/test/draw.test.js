// The drawing helpers: labels that do not stack, masks in their label's colour, and a
// multi-head result drawn with each head's name (on a recording stand-in for a 2D context).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { colorOf, Detection, drawPrediction, Mask, maskOverlay, PALETTE, placeLabels, Prediction, shownItems } from '../src/node.js';

const overlap = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;

test('labels of boxes at the same place do not stack, and stay inside the canvas', () => {
  const labels = Array.from({ length: 6 }, (_, i) => ({ box: [10 + i, 30, 80, 90], width: 60 }));
  labels.push({ box: [190, 0, 200, 20], width: 60 }); // at the top-right corner
  const rects = placeLabels(labels, { width: 200, height: 150, labelHeight: 18 });
  for (let i = 0; i < rects.length; i++) {
    assert.ok(rects[i].x >= 0 && rects[i].x + rects[i].width <= 200 && rects[i].y >= 0 && rects[i].y + 18 <= 150, `label ${i} inside`);
    for (let j = 0; j < i; j++) assert.ok(!overlap(rects[i], rects[j]), `labels ${j} and ${i} overlap`);
  }
  assert.deepEqual(rects[0], { x: 10, y: 12, width: 60, height: 18 }, 'the first just above its box');
});

test('the mask layer holds each mask in its label\'s colour, blended where they overlap', () => {
  const mask = (x0, y0) => new Mask(Uint8Array.from([1, 1, 0, 1]), x0, y0, 2, 2, 4, 3);
  const detections = [new Detection([0, 0, 2, 2], 0, 'a', 0.9, mask(0, 0)), new Detection([1, 1, 3, 3], 2, 'b', 0.8, mask(1, 1))];
  const px = maskOverlay(detections, 4, 3, { alpha: 100 });
  const at = (x, y) => [...px.subarray((y * 4 + x) * 4, (y * 4 + x) * 4 + 4)];
  const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  assert.deepEqual(at(0, 0), [...rgb(PALETTE[0]), 100]);
  assert.deepEqual(at(0, 1), [0, 0, 0, 0], 'outside every mask');
  assert.deepEqual(at(1, 1), [...rgb(PALETTE[0]).map((v, i) => (v + rgb(PALETTE[2])[i]) >> 1), 100], 'both masks');
  assert.deepEqual(at(2, 2), [...rgb(PALETTE[2]), 100]);
  assert.equal(colorOf(PALETTE.length + 1), PALETTE[1]);
});

/** A stand-in for a 2D context that records the texts and rectangles drawn. */
function recorder() {
  const calls = [];
  return {
    calls, imageSmoothingEnabled: true,
    measureText: (text) => ({ width: text.length * 7 }),
    fillText: (text, x, y) => calls.push(['text', text, x, y]),
    strokeRect: (...r) => calls.push(['box', ...r]),
    fillRect: () => {},
    drawImage: () => calls.push(['image']),
  };
}

test('a multi-head result is drawn with each head\'s name; the threshold hides weak detections', () => {
  const lb = null;
  const det = new Prediction({ source: '', task: 'detect', width: 100, height: 80, classNames: ['cat', 'dog'], letterbox: lb,
    detections: [new Detection([10, 10, 50, 50], 1, 'dog', 0.9), new Detection([12, 12, 52, 52], 0, 'cat', 0.2)] });
  const cls = new Prediction({ source: '', task: 'classify', width: 100, height: 80, classNames: ['x', 'y'], letterbox: lb,
    scores: Float32Array.from([0.3, 0.7]) });
  const multi = new Prediction({ source: '', task: 'multi', width: 100, height: 80, classNames: [], heads: { det, cls } });
  const ctx = recorder();
  const shown = drawPrediction(/** @type {any} */ (ctx), multi, { scale: 2, threshold: 0.5 });
  assert.deepEqual(shown.detections.map((s) => [s.head, s.detection.name]), [['det', 'dog']]);
  assert.deepEqual(ctx.calls.filter((c) => c[0] === 'text').map((c) => c[1]), ['det: dog 0.90', 'cls: y 0.70']);
  assert.deepEqual(ctx.calls.find((c) => c[0] === 'box').slice(1), [20, 20, 80, 80], 'boxes scaled');
  assert.equal(shownItems(det, 0).detections.length, 2);
  assert.deepEqual(drawPrediction(/** @type {any} */ (recorder()), det).detections.map((s) => s.head), ['', '']);
});
