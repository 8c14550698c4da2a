/**
 * vision-tasks in JavaScript: run the ONNX files of `vision-tasks export` (classify,
 * localize, detect, segment; single-task and multi-head) in web pages and Node, with the
 * Python runtime's letterbox, decoding and result shapes.
 *
 * ```js
 * import { VisionModel } from 'vision-tasks';
 * const model = await VisionModel.load('segment.onnx');   // backend: node | wasm | webgpu
 * const result = await model.predict('photo.jpg');         // or bytes, a Blob, an <img>, canvas, ImageData...
 * console.log(result.toDict());                                   // as Python's Prediction.to_dict()
 * ```
 *
 * @module vision-tasks
 */

export { VisionModel, BACKENDS, DEFAULT_BATCH_SIZE, checkOptions } from './model.js';
export { RemoteModel, RemoteError } from './remote.js';
export { Prediction, Detection } from './results.js';
export { Mask, resampleMask, compressCounts, decodeRle } from './masks.js';
export { Letterbox, letterbox, resizeBilinear } from './letterbox.js';
export { parseMetadata, checkGraph, headLayout, ModelFileError, CONTRACT_VERSION, DEFAULT_SCORE_THRESHOLD, OUTPUT_SPECS, TASK_OUTPUTS } from './contract.js';
export { readOnnxHeader, ProtobufError } from './onnx-proto.js';
export { toPixels, decodeImage, ImageError } from './images.js';
export { drawPrediction, shownItems, placeLabels, maskOverlay, colorOf, PALETTE } from './draw.js';
export { runOnVideo, openCamera } from './video.js';
export { roundDecimals, roundHalfEven } from './rounding.js';

/**
 * @typedef {import('./model.js').LoadOptions} LoadOptions
 * @typedef {import('./images.js').ImageInput} ImageInput
 * @typedef {import('./images.js').ImageSource} ImageSource
 * @typedef {import('./images.js').PixelInput} PixelInput
 * @typedef {import('./sources.js').ByteSource} ByteSource
 * @typedef {import('./letterbox.js').Pixels} Pixels
 * @typedef {import('./contract.js').ModelMetadata} ModelMetadata
 * @typedef {import('./contract.js').HeadMetadata} HeadMetadata
 * @typedef {import('./draw.js').DrawOptions} DrawOptions
 * @typedef {import('./draw.js').Shown} Shown
 */
