// Mask resampling gives the Python runtime's masks (vision_tasks.masks.resample_mask), and
// their COCO RLE is pycocotools' string.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compressCounts, decodeRle, Letterbox, Mask, resampleMask } from '../src/node.js';
import { readJson } from './helpers.js';

const letterboxOf = (d) => new Letterbox(d.scale, d.pad_x, d.pad_y, d.width, d.height, d.size);

test('resampleMask gives resample_mask\'s pixels on random masks, letterboxes and boxes', () => {
  const cases = readJson('masks.json');
  let pixels = 0;
  let differing = 0;
  for (const c of cases) {
    const lb = letterboxOf(c.letterbox);
    const mask = resampleMask(Float32Array.from(c.probs), c.hm, c.wm, lb, 0.5, c.box);
    assert.deepEqual([mask.x0, mask.y0, mask.width, mask.height], c.crop, 'the computed rectangle');
    const want = decodeRle(c.rle);
    const got = mask.full();
    for (let i = 0; i < want.length; i++) differing += want[i] !== got[i] ? 1 : 0;
    pixels += want.length;
  }
  assert.equal(differing, 0, `${differing} of ${pixels} pixels differ over ${cases.length} masks`);
});

test('rle() is pycocotools\' compressed RLE, and decodeRle reads it back', () => {
  const cases = readJson('masks.json');
  for (const c of cases) {
    const mask = resampleMask(Float32Array.from(c.probs), c.hm, c.wm, letterboxOf(c.letterbox), 0.5, c.box);
    assert.deepEqual(mask.rle(), c.rle);
  }
  // A hand-made 3x4 mask: column-major runs from a zero run, deltas from the fourth count on.
  const m = new Mask(Uint8Array.from([1, 1, 0, 1]), 1, 1, 2, 2, 4, 3);
  assert.deepEqual(m.counts(), [4, 1, 2, 2, 3]);
  assert.deepEqual(decodeRle({ size: [3, 4], counts: compressCounts(m.counts()) }), m.full());
  assert.equal(m.area(), 3);
  assert.ok(m.at(1, 1) && m.at(2, 1) && !m.at(1, 2) && m.at(2, 2) && !m.at(0, 0));
  assert.deepEqual(Mask.empty(4, 3).rle().counts, compressCounts([12]));
});
