// runOnVideo on a stand-in <video> (requestVideoFrameCallback driven by the test) and a
// stand-in model: each presented frame is predicted once, frames presented while the model is
// busy are skipped, results are drawn onto the canvas, stop() ends the run.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Detection, Prediction } from '../src/node.js';
import { runOnVideo } from '../src/video.js';

function standInVideo() {
  const callbacks = new Map();
  let next = 1;
  return {
    paused: false, currentTime: 0, cancelled: [],
    requestVideoFrameCallback(cb) { callbacks.set(next, cb); return next++; },
    cancelVideoFrameCallback(id) { this.cancelled.push(id); callbacks.delete(id); },
    present(mediaTime) { // the browser shows a new frame
      const pending = [...callbacks.values()];
      callbacks.clear();
      pending.forEach((cb) => cb(0, { mediaTime, presentedFrames: 0 }));
    },
  };
}

function standInModel() {
  const waiting = [];
  return {
    waiting,
    predict: () => new Promise((resolve) => waiting.push(resolve)),
  };
}

const prediction = (t) => new Prediction({ source: '', task: 'detect', width: 64, height: 48, classNames: ['a'], letterbox: null,
  detections: [new Detection([4, 4, 20, 20], 0, 'a', 0.9 - t / 100)] });

function recordingCanvas() {
  const calls = [];
  const ctx = { imageSmoothingEnabled: true, measureText: (t) => ({ width: t.length * 7 }),
    drawImage: () => calls.push('frame'), strokeRect: () => calls.push('box'), fillRect() {}, fillText() {} };
  return { calls, width: 0, height: 0, getContext: () => ctx };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('each frame is predicted once, busy frames are skipped, results drawn and stop() ends it', async () => {
  const video = standInVideo();
  const model = standInModel();
  const canvas = recordingCanvas();
  const results = [];
  const run = runOnVideo(/** @type {any} */ (video), model, { canvas, onResult: (p, f) => results.push(f) });
  video.present(0.0);
  assert.equal(model.waiting.length, 1, 'the first frame is predicted');
  video.present(0.04); // the model is still busy: skipped
  video.present(0.08);
  model.waiting[0](prediction(0));
  await tick();
  video.present(0.12);
  assert.equal(model.waiting.length, 2);
  model.waiting[1](prediction(12));
  await tick();
  const counts = await run.stop();
  assert.deepEqual(counts, { frames: 2, skipped: 2 });
  assert.deepEqual(results, [{ mediaTime: 0, index: 0 }, { mediaTime: 0.12, index: 1 }]);
  assert.deepEqual(canvas.calls, ['frame', 'box', 'frame', 'box']);
  assert.equal(canvas.width, 64);
  assert.equal(video.cancelled.length, 1, 'the pending frame callback is cancelled');
  video.present(0.16);
  assert.equal(model.waiting.length, 2, 'nothing after stop()');
});

test('a failed prediction is reported and the run goes on', async () => {
  const video = standInVideo();
  const errors = [];
  let calls = 0;
  const model = { predict: async () => { calls++; throw new Error('bad frame'); } };
  const run = runOnVideo(/** @type {any} */ (video), model, { onError: (e) => errors.push(e.message) });
  video.present(0);
  await tick();
  video.present(0.04);
  await tick();
  assert.deepEqual(await run.stop(), { frames: 2, skipped: 0 });
  assert.equal(calls, 2);
  assert.deepEqual(errors, ['bad frame', 'bad frame']);
});

test('runOnVideo refuses what is not a video or a model', () => {
  assert.throws(() => runOnVideo(/** @type {any} */ (null), { predict() {} }), /pass a <video> element/);
  assert.throws(() => runOnVideo(/** @type {any} */ (standInVideo()), /** @type {any} */ ({})), /pass a loaded model/);
});
