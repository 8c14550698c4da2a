/**
 * Graph outputs of a batch -> {@link Prediction}s in original-image coordinates, task by
 * task, as the Python decoders do (`tasks/classify`, `tasks/localize`, `tasks/detect`
 * `decode_detect`, which `segment` shares).
 *
 * @module decode
 */

import { DEFAULT_MASK_THRESHOLD, ModelFileError } from './contract.js';
import { resampleMask } from './masks.js';
import { Detection, Prediction } from './results.js';

/**
 * @typedef {object} Output  A graph output of the whole batch.
 * @property {Float32Array | BigInt64Array | Int32Array} data
 * @property {readonly number[]} dims
 */

/**
 * @typedef {(outputs: Record<string, Output>, i: number,
 *   lb: import('./letterbox.js').Letterbox, meta: import('./contract.js').HeadMetadata,
 *   minScore: number) => Prediction} Decoder
 *   Decodes image `i` of a batch; `outputs` are named as in the contract.
 */

/** The size of one row (image) of an output. */
const rowSize = (output) => output.dims.slice(1).reduce((a, b) => a * b, 1);
const row = (output, i) => {
  const n = rowSize(output);
  return output.data.subarray(i * n, (i + 1) * n);
};

/** @type {Decoder} */
function decodeClassify(outputs, i, lb, meta) {
  return new Prediction({ source: '', task: meta.task, width: lb.width, height: lb.height,
    classNames: meta.classNames, letterbox: lb, scores: Float32Array.from(row(outputs.scores, i)) });
}

/** @type {Decoder} */
function decodeLocalize(outputs, i, lb, meta) {
  const prediction = decodeClassify(outputs, i, lb, meta);
  const label = prediction.label;
  const box = lb.boxToOriginal(row(outputs.boxes, i));
  prediction.detections = [new Detection(box, label, meta.classNames[label], prediction.scores[label])];
  return prediction;
}

/**
 * Image `i`'s first `num_detections` objects scoring at least `minScore` (rows come sorted
 * by decreasing score), boxes mapped to the original image; for segment, each mask
 * resampled into the original image inside its box and thresholded at `thresholds.mask`.
 * @type {Decoder}
 */
function decodeDetect(outputs, i, lb, meta, minScore) {
  const scores = row(outputs.scores, i);
  let n = Number(outputs.num_detections.data[i]);
  if (!(n >= 0 && n <= scores.length)) {
    throw new ModelFileError(`the graph returned num_detections ${n} for a row of ${scores.length}; re-export the model`);
  }
  let kept = 0;
  const floor = Math.fround(minScore); // numpy compares float32 scores with a float32 threshold
  for (let k = 0; k < n; k++) if (scores[k] >= floor) kept++;
  n = kept;
  const boxes = row(outputs.boxes, i);
  const labels = row(outputs.labels, i);
  const masks = outputs.masks;
  const threshold = Number(meta.thresholds.mask ?? DEFAULT_MASK_THRESHOLD);
  const detections = [];
  for (let k = 0; k < n; k++) {
    const box = lb.boxToOriginal(boxes.subarray(k * 4, k * 4 + 4));
    const label = Number(labels[k]);
    if (!(label >= 0 && label < meta.classNames.length)) {
      throw new ModelFileError(`the graph returned label ${label} but its metadata names ` +
        `${meta.classNames.length} classes (class_names); the metadata does not describe this graph: re-export the model`);
    }
    let mask = null;
    if (masks) {
      const [, K, hm, wm] = masks.dims;
      const offset = (i * K + k) * hm * wm;
      mask = resampleMask(masks.data.subarray(offset, offset + hm * wm), hm, wm, lb, threshold, box);
    }
    detections.push(new Detection(box, label, meta.classNames[label], scores[k], mask));
  }
  return new Prediction({ source: '', task: meta.task, width: lb.width, height: lb.height,
    classNames: meta.classNames, letterbox: lb, detections });
}

/** The decoder of each task. @type {Record<string, Decoder>} */
export const DECODERS = {
  classify: decodeClassify,
  localize: decodeLocalize,
  detect: decodeDetect,
  segment: decodeDetect,
};

/**
 * Predictions of a batch: one per letterbox, each head decoded by its task's decoder.
 *
 * @param {Record<string, Output>} outputs  graph outputs by graph name
 * @param {import('./letterbox.js').Letterbox[]} letterboxes
 * @param {string[]} sources
 * @param {import('./contract.js').ModelMetadata} meta
 * @param {Map<string, {meta: import('./contract.js').HeadMetadata, names: Record<string, string>}>} layout
 *   head name (`""` for a single-task model) -> its metadata and output names
 *   ({@link import('./contract.js').headLayout})
 * @param {number} minScore
 * @returns {Prediction[]}
 */
export function decodeBatch(outputs, letterboxes, sources, meta, layout, minScore) {
  return letterboxes.map((lb, i) => {
    const perHead = {};
    for (const [name, { meta: head, names }] of layout) {
      const named = Object.fromEntries(Object.entries(names).map(([k, graphName]) => [k, outputs[graphName]]));
      perHead[name] = DECODERS[head.task](named, i, lb, head, minScore);
      perHead[name].source = sources[i];
    }
    if (!meta.heads) return perHead[''];
    return new Prediction({ source: sources[i], task: meta.task, width: lb.width, height: lb.height,
      classNames: [], letterbox: lb, heads: perHead });
  });
}
