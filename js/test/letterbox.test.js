// The letterbox gives the bytes of the Python runtime's (vision_tasks.imaging.letterbox:
// OpenCV's INTER_LINEAR resize), and the same geometry.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { letterbox, Letterbox, roundDecimals, roundHalfEven } from '../src/node.js';
import { fixture, readJson } from './helpers.js';

test('letterbox gives the Python runtime bytes on random images of any size, up and down', () => {
  const cases = readJson('letterbox', 'cases.json');
  let differing = 0;
  cases.forEach((c, i) => {
    const data = new Uint8Array(readFileSync(fixture('letterbox', `${i}.rgb`)));
    const want = new Uint8Array(readFileSync(fixture('letterbox', `${i}.input`)));
    const { input, letterbox: lb } = letterbox({ data, width: c.width, height: c.height, channels: 3 }, c.size);
    assert.deepEqual(lb.toDict(), c.letterbox, `case ${i}: geometry`);
    for (let k = 0; k < want.length; k++) if (want[k] !== input[k]) differing++;
  });
  assert.equal(differing, 0, `${differing} bytes differ from the Python letterbox over ${cases.length} images`);
});

test('letterbox reads RGBA and gray pixels as the RGB image they hold', () => {
  const rgb = Uint8Array.from({ length: 7 * 5 * 3 }, (_, i) => (i * 37) % 256);
  const rgba = new Uint8Array(7 * 5 * 4);
  const gray = new Uint8Array(7 * 5);
  for (let p = 0; p < 35; p++) {
    rgba.set(rgb.subarray(p * 3, p * 3 + 3), p * 4);
    rgba[p * 4 + 3] = p; // alpha is dropped
    gray[p] = rgb[p * 3];
  }
  const a = letterbox({ data: rgb, width: 7, height: 5, channels: 3 }, [16, 16]).input;
  assert.deepEqual(letterbox({ data: rgba, width: 7, height: 5, channels: 4 }, [16, 16]).input, a);
  const g = letterbox({ data: gray, width: 7, height: 5, channels: 1 }, [16, 16]).input;
  for (let p = 0; p < 256; p++) assert.ok(g[p * 3] === g[p * 3 + 1] && g[p * 3] === g[p * 3 + 2]);
});

test('letterbox pads with the pad value, the odd pixel right and bottom', () => {
  const { input, letterbox: lb } = letterbox({ data: new Uint8Array(3 * 2 * 3).fill(7), width: 3, height: 2, channels: 3 }, [5, 5], 114);
  // scale min(5/2, 5/3) = 5/3: 5 x round(3.33) = 3 rows, padY = 1 (1 above, 1 below)
  assert.deepEqual(lb.toDict(), { scale: 5 / 3, pad_x: 0, pad_y: 1, width: 3, height: 2, size: [5, 5] });
  const rows = [...Array(5)].map((_, y) => input[y * 15]);
  assert.deepEqual(rows, [114, 7, 7, 7, 114]);
});

test('boxes map to the original image and back, clipped to it', () => {
  const lb = Letterbox.fit(200, 100, [64, 64]);
  assert.equal(lb.scale, 0.32);
  assert.equal(lb.padY, 16);
  const box = [10, 20, 150, 90];
  assert.deepEqual(lb.boxToOriginal(lb.boxToInput(box)).map((v) => Math.round(v * 1e4) / 1e4), box);
  assert.deepEqual(lb.boxToOriginal([-5, 0, 70, 64]), [0, 0, 200, 100]);
});

test('rounding is Python\'s: ties to even, on the exact binary value', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, -0.5, -1.5].map(roundHalfEven), [0, 2, 2, 4, 0, -2]);
  // round(0.125, 2) == 0.12, round(0.375, 2) == 0.38, round(2.675, 2) == 2.67 (binary below), round(1e-7, 6) == 0
  assert.deepEqual([[0.125, 2], [0.375, 2], [2.675, 2], [12.125, 2], [1e-7, 6], [0.0000015, 6], [99.995, 2]]
    .map(([x, d]) => roundDecimals(x, d)), [0.12, 0.38, 2.67, 12.12, 0, 0.000002, 100]);
});
