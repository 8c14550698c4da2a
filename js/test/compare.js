// Compares the JavaScript results of an image with the Python runtime's (`to_dict()` of
// each): classes, boxes, scores and masks, within limits. Shared by the tests in this folder,
// the consumer projects (test/consumers/) and the browser tests.

import assert from 'node:assert/strict';

/** The limits of the parity tests: the same pixels in, the same model. */
export const PARITY = { box: 0.5, score: 1e-4, maskIou: 0.99 };

/** The limits for the ICC photo: the conversion to sRGB (lcms2 in Python and sharp, skcms in
 * Chromium) rounds a level differently here and there. */
export const ICC = { box: 2, score: 1e-2, maskIou: 0.9 };

function iou(a, b) {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    inter += a[i] & b[i];
    union += a[i] | b[i];
  }
  return union === 0 ? 1 : inter / union;
}

/**
 * `compare(got, want, where)` of one image's `toDict()` results (single-task), and
 * `compareHeads` (multi-head: each head's fields under its name); both return the largest
 * differences seen and fail the test past the limits.
 * @param {(rle: {size: number[], counts: string}) => Uint8Array} decodeRle
 * @param {{box: number, score: number, maskIou: number}} [limits]
 */
export function comparer(decodeRle, limits = PARITY) {
  const BOX_TOLERANCE = limits.box; // px, original image
  const SCORE_TOLERANCE = limits.score;
  const MIN_MASK_IOU = limits.maskIou;

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
  return { compare, compareHeads };
}
