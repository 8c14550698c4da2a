/**
 * vision-tasks in JavaScript: run the ONNX files of `vision-tasks export` (classify,
 * localize, detect, segment; single-task and multi-head) in web pages and Node, with the
 * Python runtime's letterbox, decoding and result shapes.
 *
 * ```js
 * import { VisionModel } from 'vision-tasks';
 * const model = await VisionModel.load('segment.onnx');          // backend: node | wasm | webgpu
 * const result = await model.predict({ data: rgb, width, height }); // or an <img>, canvas, ImageData...
 * console.log(result.toDict());                                   // as Python's Prediction.to_dict()
 * ```
 *
 * @module vision-tasks
 */

export { VisionModel, BACKENDS, DEFAULT_BATCH_SIZE } from './model.js';
export { Prediction, Detection } from './results.js';
export { Mask, resampleMask, compressCounts, decodeRle } from './masks.js';
export { Letterbox, letterbox, resizeBilinear } from './letterbox.js';
export { parseMetadata, checkGraph, headLayout, ModelFileError, CONTRACT_VERSION, DEFAULT_SCORE_THRESHOLD, TASK_OUTPUTS } from './contract.js';
export { readOnnxHeader, ProtobufError } from './onnx-proto.js';
export { toPixels } from './images.js';
export { roundDecimals, roundHalfEven } from './rounding.js';
