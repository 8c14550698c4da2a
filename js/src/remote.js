/**
 * `RemoteModel`: a model served by `vision-tasks serve`, used like a {@link VisionModel}
 * (`predict` takes the same images and gives the same `Prediction` objects, whose `toDict()`
 * is the server's JSON), over HTTP instead of onnxruntime: a page can switch between running
 * the file itself and asking a server by changing how the model is made.
 *
 * ```js
 * import { RemoteModel } from 'vision-tasks';
 * const model = await RemoteModel.connect('http://127.0.0.1:8000', { model: 'detect' });
 * const result = await model.predict('photo.jpg');   // bytes, a Blob / File, a URL, a path (Node), a canvas
 * console.log(result.toDict());
 * ```
 *
 * The server decodes and letterboxes the image, so what is sent is the encoded file (a
 * canvas is encoded as PNG first). Class scores come back for every class (the request asks
 * for `top_k` = the number of classes), so `top(k)`, `label`, `name` and `score` work as on a
 * local model; scores carry the server's 6 decimals.
 *
 * @module remote
 */

import { Mask, decodeRle } from './masks.js';
import { Detection, Prediction } from './results.js';
import { byteSourceName, firstLine, isByteSource, readBytes } from './sources.js';

/** An answer of the server that is not a prediction: `status` is its HTTP status (0: none). */
export class RemoteError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   */
  constructor(message, status) {
    super(message);
    this.name = 'RemoteError';
    this.status = status;
  }
}

const MAX_TOP_K = 1000;

/**
 * @typedef {object} ConnectOptions
 * @property {string} [model]  the model's name on the server (default: its only model)
 * @property {string} [token]  bearer token of a server run with `--token-file`
 * @property {number} [scoreThreshold]  default score threshold of `predict` (detect, segment)
 * @property {number} [timeoutMs]  per request (default 60000)
 * @property {typeof fetch} [fetch]  the fetch to use (default: the global one)
 */

export class RemoteModel {
  /**
   * Reads the model's description from the server (`GET /v1/models`).
   * @param {string | URL} url  the server, e.g. `http://127.0.0.1:8000`
   * @param {ConnectOptions} [options]
   * @returns {Promise<RemoteModel>}
   * @throws {RemoteError} the server cannot be reached, refuses the token, or has no such model
   */
  static async connect(url, options = {}) {
    const base = String(url).replace(/\/+$/, '');
    const model = new RemoteModel(base, null, options);
    const { models } = await model.request('GET', '/v1/models');
    const info = options.model === undefined && models.length === 1
      ? models[0] : models.find((m) => m.name === options.model);
    if (!info) {
      throw new RemoteError(`${base}: ${options.model === undefined ? 'serves several models' : `has no model '${options.model}'`}; ` +
        `pass {model} one of ${models.map((m) => m.name).join(', ')}`, 404);
    }
    model.info = info;
    return model;
  }

  /**
   * @param {string} base
   * @param {any} info  the model's entry of `GET /v1/models`
   * @param {ConnectOptions} options
   */
  constructor(base, info, options) {
    this.url = base;
    /** The server's description of the model (task, classes, input_size, heads...). */
    this.info = info;
    this.token = options.token;
    this.scoreThreshold = options.scoreThreshold;
    this.timeoutMs = options.timeoutMs ?? 60000;
    this.fetch = options.fetch ?? globalThis.fetch;
    /** Where predictions are computed: always 'remote' here. */
    this.backend = 'remote';
  }

  /** The model's task (`classify`, `localize`, `detect`, `segment`, or `multi`). */
  get task() {
    return this.info.task;
  }

  /** Class names: label `i` is `classNames[i]`. */
  get classNames() {
    return this.info.classes;
  }

  /** Model input `[height, width]`. */
  get inputSize() {
    return this.info.input_size;
  }

  /**
   * One call to the server; the JSON answer, or a RemoteError with the server's message.
   * @param {string} method
   * @param {string} path
   * @param {BodyInit} [body]
   */
  async request(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/octet-stream';
    let response;
    try {
      response = await this.fetch(`${this.url}${path}`, {
        method, headers, body, signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new RemoteError(`${this.url}: cannot reach the server (${firstLine(err)})`, 0);
    }
    const text = await response.text();
    let answer;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new RemoteError(`${this.url}${path}: HTTP ${response.status}, not JSON (${text.slice(0, 80)})`, response.status);
    }
    if (!response.ok) {
      throw new RemoteError(`${this.url}${path}: HTTP ${response.status}: ${answer.error ?? text}`, response.status);
    }
    return answer;
  }

  /**
   * Predictions for one image or many, in order, one request per image (the server batches
   * concurrent requests, so they are sent at once).
   *
   * @template {any} T
   * @param {T} images  one image (encoded bytes, a Blob / File, a URL, a path in Node, a
   *   canvas), or an array of them
   * @param {{scoreThreshold?: number}} [options]  overrides the score threshold (detect, segment)
   * @returns {Promise<T extends any[] ? Prediction[] : Prediction>}
   */
  async predict(images, options = {}) {
    const list = Array.isArray(images) ? images : [images];
    const threshold = options.scoreThreshold ?? this.scoreThreshold;
    const classes = Math.max(1, this.classNames.length,
      ...Object.values(this.info.heads ?? {}).map((head) => head.classes.length));
    const query = new URLSearchParams({ top_k: String(Math.min(MAX_TOP_K, classes)) });
    if (threshold !== undefined) query.set('score_threshold', String(threshold));
    const path = `/v1/models/${encodeURIComponent(this.info.name)}/predict?${query}`;
    const out = await Promise.all(list.map(async (image) => {
      const { bytes, name } = await encoded(image);
      const line = await this.request('POST', path, bytes);
      return fromDict({ ...line, source: name }, this.info);
    }));
    return /** @type {any} */ (Array.isArray(images) ? out : out[0]);
  }

  /** Nothing to free (the model lives on the server); here for `VisionModel`'s interface. */
  async dispose() {}
}

/** The encoded bytes of an image and its name. */
async function encoded(image) {
  const fail = (message) => new RemoteError(message, 0);
  image = await image;
  if (isByteSource(image)) return readBytes(image, fail);
  const canvas = /** @type {any} */ (image);
  if (typeof canvas?.convertToBlob === 'function') {
    return readBytes(await canvas.convertToBlob({ type: 'image/png' }), fail);
  }
  if (typeof canvas?.toBlob === 'function') {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
    return { ...(await readBytes(blob, fail)), name: `<${canvas.constructor.name}>` };
  }
  throw new TypeError(`RemoteModel sends encoded images: pass the file's bytes, a Blob, a URL, ` +
    `a path (Node) or a canvas, not ${byteSourceName(image) === '<bytes>' ? typeof image : byteSourceName(image)}`);
}

/**
 * A `Prediction` from the server's JSON (a `predictions.jsonl` line) of a model described by
 * `info` (its `GET /v1/models` entry).
 * @param {any} line
 * @param {{task: string, classes: string[], heads?: Record<string, {task: string, classes: string[]}>}} info
 * @returns {Prediction}
 */
export function fromDict(line, info) {
  const { source, width, height } = line;
  const one = (fields, task, classNames) => {
    let scores = null;
    if (fields.top) {
      scores = new Float32Array(classNames.length);
      for (const { label, score } of fields.top) scores[label] = score;
    }
    const detections = fields.detections?.map((d) => new Detection(d.box, d.label, d.name, d.score,
      d.mask ? new Mask(decodeRle(d.mask), 0, 0, width, height, width, height) : null)) ?? null;
    return new Prediction({ source, task, width, height, classNames, scores, detections });
  };
  const heads = Object.entries(info.heads ?? {});
  if (!heads.length) return one(line, info.task, info.classes);
  const prediction = new Prediction({ source, task: info.task, width, height, classNames: [] });
  prediction.heads = Object.fromEntries(heads.filter(([name]) => line[name])
    .map(([name, head]) => [name, one({ ...line[name] }, head.task, head.classes)]));
  return prediction;
}
