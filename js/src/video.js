/**
 * Running a model on a `<video>` element or a webcam stream, frame by frame, with the same
 * drawings as still images ({@link drawPrediction}).
 *
 * Frames are taken with `HTMLVideoElement.requestVideoFrameCallback` (called once per frame
 * the browser presents, with its media time), or `requestAnimationFrame` where that is
 * missing. One prediction runs at a time: frames presented while the model is busy are
 * skipped (counted in `skipped`), so a slow model lowers the rate of results, never the
 * video's, and nothing queues up.
 *
 * ```js
 * import { loadModel } from 'vision-tasks';
 * import { runOnVideo, openCamera } from 'vision-tasks/src/video.js'; // not yet in the entry points
 * const model = await loadModel('detect.onnx');
 * await openCamera(video);                       // or video.src = 'clip.mp4'; await video.play();
 * const run = runOnVideo(video, model, { canvas, onResult: (p, frame) => console.log(frame.mediaTime, p) });
 * // ... later
 * const { frames, skipped } = await run.stop();
 * ```
 *
 * @module video
 */

import { drawPrediction } from './draw.js';

/** @typedef {import('./results.js').Prediction} Prediction */

/**
 * @typedef {object} FrameInfo  the frame a prediction belongs to
 * @property {number} mediaTime  seconds into the media (`metadata.mediaTime`; the video's
 *   `currentTime` under `requestAnimationFrame`)
 * @property {number} index  0-based count of the frames predicted so far
 */

/**
 * @typedef {object} VideoRunOptions
 * @property {HTMLCanvasElement | OffscreenCanvas} [canvas]  drawn with the frame and its
 *   prediction (sized to the video's frame)
 * @property {(prediction: Prediction, frame: FrameInfo) => void} [onResult]  each result
 * @property {(error: unknown) => void} [onError]  a failed prediction (the run goes on;
 *   default: `console.error`)
 * @property {import('./draw.js').DrawOptions} [draw]  options of {@link drawPrediction}
 */

/**
 * Predict on every frame `video` presents until `stop()`.
 *
 * @param {HTMLVideoElement} video  playing (a file, a `MediaStream` from {@link openCamera}...)
 * @param {{predict(image: any): Promise<Prediction>}} model  a loaded model (`loadModel`)
 * @param {VideoRunOptions} [options]
 * @returns {{stop(): Promise<{frames: number, skipped: number}>}}  `stop` waits for the
 *   prediction in flight and resolves with the counts
 */
export function runOnVideo(video, model, options = {}) {
  if (!video || typeof video !== 'object') throw new TypeError('runOnVideo: pass a <video> element');
  if (!model || typeof model.predict !== 'function') throw new TypeError('runOnVideo: pass a loaded model (loadModel)');
  const { canvas, onResult, onError = (e) => console.error(e), draw = {} } = options;
  const ctx = canvas ? /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')) : null;
  const perFrame = typeof video.requestVideoFrameCallback === 'function';
  let stopped = false;
  let handle = 0;
  let busy = null;
  let frames = 0;
  let skipped = 0;

  const schedule = () => {
    if (stopped) return;
    handle = perFrame ? video.requestVideoFrameCallback(onFrame) : requestAnimationFrame(() => onFrame(0, null));
  };

  async function predictFrame(mediaTime) {
    const index = frames++;
    try {
      const prediction = await model.predict(video);
      if (ctx && !stopped) {
        const { width, height } = prediction;
        if (canvas.width !== width || canvas.height !== height) Object.assign(canvas, { width, height });
        ctx.drawImage(video, 0, 0, width, height);
        drawPrediction(ctx, prediction, draw);
      }
      onResult?.(prediction, { mediaTime, index });
    } catch (error) {
      onError(error);
    }
  }

  function onFrame(_now, metadata) {
    if (stopped) return;
    if (busy) {
      skipped++;
    } else if (!video.paused || perFrame) {
      const mediaTime = metadata ? metadata.mediaTime : video.currentTime;
      busy = predictFrame(mediaTime).finally(() => { busy = null; });
    }
    schedule();
  }

  schedule();
  return {
    async stop() {
      stopped = true;
      if (perFrame) video.cancelVideoFrameCallback?.(handle);
      else cancelAnimationFrame(handle);
      await busy;
      return { frames, skipped };
    },
  };
}

/**
 * Show a camera in `video`: `getUserMedia` with `constraints`, then play.
 *
 * @param {HTMLVideoElement} video
 * @param {MediaStreamConstraints} [constraints]  default: the environment-facing camera
 * @returns {Promise<MediaStream>}  stop it with `stream.getTracks().forEach((t) => t.stop())`
 */
export async function openCamera(video, constraints = { video: { facingMode: 'environment' }, audio: false }) {
  if (!globalThis.navigator?.mediaDevices?.getUserMedia) {
    throw new Error('openCamera: this page has no camera access (navigator.mediaDevices needs https or localhost)');
  }
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  video.srcObject = stream;
  video.muted = true;
  video.playsInline = true;
  await video.play();
  return stream;
}
