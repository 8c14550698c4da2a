/**
 * Prediction results, shaped like the Python runtime's (`vision_tasks/results.py`): one
 * {@link Prediction} per image whose `toDict()` is the Python `Prediction.to_dict()`, key for
 * key and number for number (scores rounded to 6 decimals, boxes to 2, masks as compressed
 * COCO RLE). Coordinates are original-image pixels, boxes `[x1, y1, x2, y2]`.
 *
 * | task     | `scores`               | `detections`                  |
 * |----------|------------------------|-------------------------------|
 * | classify | `[C]` probabilities    | null                          |
 * | localize | `[C]` probabilities    | one (the top class)           |
 * | detect   | null                   | up to K                       |
 * | segment  | null                   | up to K, each with a `mask`   |
 *
 * @module results
 */

import { roundDecimals } from './rounding.js';

export const SCORE_DECIMALS = 6;
export const BOX_DECIMALS = 2;

/**
 * @typedef {object} ClassScore
 * @property {number} label
 * @property {string} name
 * @property {number} score
 */

/** Indices of the `k` largest values, largest first, ties in index order. */
function ranked(values, k) {
  const order = Array.from(values, (_, i) => i);
  order.sort((a, b) => values[b] - values[a] || a - b);
  return order.slice(0, k);
}

/** One object: a box in original-image pixels, its class and score, and (segment) its mask. */
export class Detection {
  /**
   * @param {[number, number, number, number]} box  `[x1, y1, x2, y2]`, clipped to the image
   * @param {number} label  index into the model's class names
   * @param {string} name
   * @param {number} score  confidence in [0, 1]
   * @param {import('./masks.js').Mask | null} [mask]  segment only
   */
  constructor(box, label, name, score, mask = null) {
    this.box = box;
    this.label = label;
    this.name = name;
    this.score = score;
    this.mask = mask;
  }

  /** Python's `Detection.to_dict()`: box, label, name, score and (segment) the mask as RLE. */
  toDict() {
    const out = {
      box: this.box.map((v) => roundDecimals(v, BOX_DECIMALS)),
      label: this.label,
      name: this.name,
      score: roundDecimals(this.score, SCORE_DECIMALS),
    };
    if (this.mask) out.mask = this.mask.rle();
    return out;
  }

  toJSON() {
    return this.toDict();
  }
}

/** The result of one image. */
export class Prediction {
  /**
   * @param {object} fields
   * @param {string} fields.source  what the image was (a URL, `<ImageData>`, `<pixels>`...)
   * @param {string} fields.task
   * @param {number} fields.width  original image width
   * @param {number} fields.height
   * @param {string[]} fields.classNames
   * @param {Float32Array | null} [fields.scores]  class probabilities (classify, localize)
   * @param {Detection[] | null} [fields.detections]  (localize, detect, segment)
   * @param {import('./letterbox.js').Letterbox | null} [fields.letterbox]
   * @param {Record<string, Prediction> | null} [fields.heads]  a multi-head model's result per head
   */
  constructor({ source, task, width, height, classNames, scores = null, detections = null,
    letterbox = null, heads = null }) {
    this.source = source;
    this.task = task;
    this.width = width;
    this.height = height;
    this.classNames = classNames;
    this.scores = scores;
    this.detections = detections;
    this.letterbox = letterbox;
    this.heads = heads;
  }

  /** Index of the most probable class (classify, localize), else null. */
  get label() {
    return this.scores ? ranked(this.scores, 1)[0] : null;
  }

  /** Name of the most probable class, else null. */
  get name() {
    return this.scores ? this.classNames[this.label] : null;
  }

  /** Probability of the most probable class, else null. */
  get score() {
    return this.scores ? this.scores[this.label] : null;
  }

  /**
   * The `k` most probable classes, best first (empty without class scores).
   * @param {number} [k=5]
   * @returns {ClassScore[]}
   */
  top(k = 5) {
    if (!this.scores) return [];
    return ranked(this.scores, k).map((i) => ({ label: i, name: this.classNames[i], score: this.scores[i] }));
  }

  /**
   * Python's `Prediction.to_dict()`: source, task, width, height; for class scores the top
   * class (label, name, score) and `top` (k classes); `detections`; for a multi-head model
   * each head's fields under its name.
   * @param {number} [topK=5]
   */
  toDict(topK = 5) {
    const out = { source: this.source, task: this.task, width: this.width, height: this.height };
    if (this.scores) {
      const top = ranked(this.scores, Math.max(1, topK)).map((i) => ({
        label: i, name: this.classNames[i], score: roundDecimals(this.scores[i], SCORE_DECIMALS),
      }));
      Object.assign(out, top[0], { top: top.slice(0, topK) });
    }
    if (this.detections) out.detections = this.detections.map((d) => d.toDict());
    for (const [name, head] of Object.entries(this.heads ?? {})) {
      const { source, width, height, ...fields } = head.toDict(topK);
      out[name] = fields;
    }
    return out;
  }

  toJSON() {
    return this.toDict();
  }
}
