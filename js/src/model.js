/**
 * `VisionModel`: a vision-tasks ONNX file, run by onnxruntime (onnxruntime-node in Node,
 * onnxruntime-web's WASM or WebGPU backend in a browser or in Node) on images of any size.
 *
 * @module model
 */

import { checkGraph, DEFAULT_SCORE_THRESHOLD, headLayout, INPUT_NAME, ModelFileError, parseMetadata } from './contract.js';
import { decodeBatch } from './decode.js';
import { toPixels } from './images.js';
import { letterbox } from './letterbox.js';
import { ProtobufError, readOnnxHeader } from './onnx-proto.js';
import { IN_NODE, platform } from './platform.js';
import { isByteSource, readBytes } from './sources.js';

/** Images per inference call, as in the Python runtime. */
export const DEFAULT_BATCH_SIZE = 32;

/**
 * Backends, the onnxruntime package each needs, and its execution providers. WebGPU has no
 * NonMaxSuppression kernel (nor some others): onnxruntime-web runs those nodes on its WASM
 * CPU provider, listed after WebGPU.
 */
export const BACKENDS = {
  node: { module: 'onnxruntime-node', providers: ['cpu'] },
  wasm: { module: 'onnxruntime-web', providers: ['wasm'] },
  webgpu: { module: 'onnxruntime-web', providers: ['webgpu', 'wasm'] },
};

/**
 * @typedef {object} LoadOptions
 * @property {'node' | 'wasm' | 'webgpu'} [backend]  default: `node` in Node (or for an
 *   `ort` that is onnxruntime-node), `wasm` elsewhere
 * @property {any} [ort]  the onnxruntime module to use (`import * as ort from ...`); by
 *   default the peer dependency your project installs: `onnxruntime-node` (backend `node`)
 *   or `onnxruntime-web` (`wasm`, `webgpu`), imported by name (a bundler bundles it; a page
 *   without one maps that name in its import map)
 * @property {string} [task]  when given, the model must be of this task
 * @property {number} [scoreThreshold=0.25]  detections (detect, segment) scoring below this
 *   are left out; 0 keeps all the graph returns
 * @property {number} [batchSize=32]  images per inference call
 * @property {number} [threads]  intra-op threads (node: default all cores; wasm: sets
 *   `ort.env.wasm.numThreads`, which needs a cross-origin-isolated page to exceed 1)
 * @property {object} [sessionOptions]  more onnxruntime `InferenceSession` options
 */

const EXPORT_HINT = 'export one with `vision-tasks export RUN/weights/best.pt --out model.onnx`';

/** The bytes of a model source, with errors that name it. */
async function modelBytes(source) {
  if (source !== null && typeof source?.then === 'function') source = await source;
  if (!isByteSource(source)) {
    throw new TypeError(`VisionModel.load takes a URL or path, bytes (Uint8Array, ArrayBuffer), a Blob or a Response, ` +
      `got ${source === null ? 'null' : source?.constructor?.name ?? typeof source}`);
  }
  return readBytes(source, (message) => new ModelFileError(`${message.replace(/; check the path$/, '')}; ${EXPORT_HINT}`));
}

/**
 * Checks the options of `load` (and `predict`'s `scoreThreshold`): one-line errors naming the
 * option, the value and what it takes.
 * @param {Record<string, any>} options
 */
export function checkOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`options must be an object, got ${options === null ? 'null' : typeof options}`);
  }
  const number = (key, ok, what) => {
    const value = options[key];
    if (value === undefined) return;
    if (typeof value !== 'number') {
      throw new TypeError(`${key} must be a number (${what}), got ${JSON.stringify(value)} (${typeof value})`);
    }
    if (!ok(value)) throw new RangeError(`${key} must be ${what}, got ${value}`);
  };
  number('scoreThreshold', (v) => v >= 0 && v <= 1, 'in [0, 1]');
  number('batchSize', (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  number('threads', (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  if (options.backend !== undefined && !Object.hasOwn(BACKENDS, options.backend)) {
    throw new RangeError(`backend must be one of ${Object.keys(BACKENDS).join(', ')}, got ${JSON.stringify(options.backend)}`);
  }
  if (options.task !== undefined && typeof options.task !== 'string') {
    throw new TypeError(`task must be a task name (classify, localize, detect, segment, multi), got ${JSON.stringify(options.task)}`);
  }
}

/** The onnxruntime module of `backend`: the peer dependency, imported by name. */
async function importOrt(backend, module) {
  try {
    return await platform.importOrt(backend);
  } catch (err) {
    throw new Error(`the ${backend} backend needs ${module} (npm install ${module}), or pass {ort} ` +
      `(${String(err.message).split('\n')[0]})`);
  }
}

/** Runs `session` once on one blank input image. */
async function runBlank(ort, session, [h, w]) {
  const tensor = new ort.Tensor('uint8', new Uint8Array(h * w * 3), [1, h, w, 3]);
  await session.run({ [INPUT_NAME]: tensor });
}

/** A vision-tasks model, ready to predict. Create it with {@link VisionModel.load}. */
export class VisionModel {
  /**
   * Loads a model: reads its contract metadata from the ONNX bytes, checks it and the graph's
   * input and outputs, and starts an onnxruntime session on `backend`.
   *
   * @param {import('./sources.js').ByteSource | Promise<import('./sources.js').ByteSource>} source
   *   a URL (fetched), a file path or `file:` URL (Node), the file's bytes, a `Blob` / `File`,
   *   a `Response`, or a promise of one
   * @param {LoadOptions} [options]
   * @returns {Promise<VisionModel>}
   * @throws {ModelFileError} missing or unreadable file, not a vision-tasks model, a newer
   *   contract, a task this client does not decode, or not the `task` asked for
   * @throws {TypeError | RangeError} a source or an option of the wrong kind or out of range
   */
  static async load(source, options = {}) {
    checkOptions(options);
    const { bytes, name } = await modelBytes(source);
    let header;
    try {
      header = readOnnxHeader(bytes);
    } catch (err) {
      if (!(err instanceof ProtobufError)) throw err;
      throw new ModelFileError(`${name}: not an ONNX model (${err.message}); ${EXPORT_HINT}`);
    }
    const meta = parseMetadata(header.metadata, name);
    checkGraph(meta, header, name);
    if (options.task && options.task !== meta.task) {
      throw new ModelFileError(`${name}: a ${meta.task} model, but a ${options.task} model is needed here`);
    }
    // The default: onnxruntime-node for a given module that is it (its env.versions names
    // 'node'), else node in Node and wasm elsewhere.
    const given = options.ort?.env?.versions;
    const backend = options.backend ?? (given ? (given.node ? 'node' : 'wasm') : IN_NODE ? 'node' : 'wasm');
    const spec = BACKENDS[backend];
    const ort = options.ort ?? await importOrt(backend, spec.module);
    /** @type {Record<string, any>} */
    const sessionOptions = { executionProviders: spec.providers, graphOptimizationLevel: 'all', ...options.sessionOptions };
    if (backend === 'node') {
      sessionOptions.interOpNumThreads ??= 1;
      if (options.threads) sessionOptions.intraOpNumThreads ??= options.threads;
      // No busy-waiting between runs, as in the Python runtime (it steals cores from the rest).
      sessionOptions.extra ??= { session: { intra_op: { allow_spinning: '0' } } };
    } else if (options.threads) {
      ort.env.wasm.numThreads = options.threads;
    }
    let session = await ort.InferenceSession.create(bytes, sessionOptions);
    let backendNote = '';
    if (backend === 'webgpu') {
      // onnxruntime-web 1.30's WebGPU GatherND kernel fails on the detect and segment graphs:
      // one run of a blank image tells, and the WASM backend
      // takes over (README, "Use the model from JavaScript").
      try {
        await runBlank(ort, session, meta.inputSize);
      } catch (err) {
        await session.release?.();
        backendNote = `WebGPU cannot run this model (${String(err.message).split('\n')[0]}); it runs on WASM`;
        session = await ort.InferenceSession.create(bytes, { ...sessionOptions, executionProviders: BACKENDS.wasm.providers });
        return new VisionModel(session, ort, meta, { ...options, backend: 'wasm', backendNote, source: name });
      }
    }
    return new VisionModel(session, ort, meta, { ...options, backend, backendNote, source: name });
  }

  /**
   * @param {any} session  an onnxruntime `InferenceSession` of the file
   * @param {any} ort  its onnxruntime module
   * @param {import('./contract.js').ModelMetadata} meta
   * @param {LoadOptions & {source: string, backendNote?: string}} options
   */
  constructor(session, ort, meta, options) {
    this.session = session;
    this.ort = ort;
    /** The checked contract metadata (task, class names, input size, thresholds...). */
    this.metadata = meta;
    /**
     * Each head's metadata and graph output names (`''` for a single-task model).
     * @type {Map<string, {meta: import('./contract.js').HeadMetadata, names: Record<string, string>}>}
     */
    this.layout = headLayout(meta, options.source);
    /** The backend really in use (`webgpu` falls back to `wasm` where it cannot run the model). */
    this.backend = options.backend;
    /** Why the backend asked for is not the one in use ('' when it is). */
    this.backendNote = options.backendNote ?? '';
    this.source = options.source;
    checkOptions(options);
    this.scoreThreshold = options.scoreThreshold ?? DEFAULT_SCORE_THRESHOLD;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    /** Graph outputs the decoders read. */
    this.outputNames = [...this.layout.values()].flatMap((h) => Object.values(h.names));
  }

  /** The model's task (`classify`, `localize`, `detect`, `segment`, or `multi`). */
  get task() {
    return this.metadata.task;
  }

  /** Class names: label `i` is `classNames[i]` (a multi-head model: see `metadata.heads`). */
  get classNames() {
    return this.metadata.classNames;
  }

  /** Model input `[height, width]`. */
  get inputSize() {
    return this.metadata.inputSize;
  }

  /**
   * Letterboxes one image into the model's input.
   * @param {import('./images.js').ImageInput} image
   * @returns {Promise<{input: Uint8Array, letterbox: import('./letterbox.js').Letterbox, source: string}>}
   */
  async prepare(image) {
    const { pixels, source } = await toPixels(image);
    const { input, letterbox: lb } = letterbox(pixels, this.inputSize, this.metadata.padValue);
    return { input, letterbox: lb, source };
  }

  /**
   * The model alone: letterboxed uint8 images `[n, H, W, 3]` -> the graph's outputs by name.
   * @param {Uint8Array} images  `n * H * W * 3` bytes
   * @param {number} n
   * @returns {Promise<Record<string, import('./decode.js').Output>>}
   */
  async run(images, n) {
    const [h, w] = this.inputSize;
    if (images.length !== n * h * w * 3) {
      throw new RangeError(`run expects ${n} letterboxed images of ${h}x${w}x3 bytes (${n * h * w * 3}), ` +
        `got ${images.length} bytes; use predict for images of any size`);
    }
    const tensor = new this.ort.Tensor('uint8', images, [n, h, w, 3]);
    const results = await this.session.run({ [INPUT_NAME]: tensor }, this.outputNames);
    tensor.dispose?.();
    const outputs = {};
    for (const name of this.outputNames) {
      const t = results[name];
      outputs[name] = { data: t.data, dims: t.dims };
    }
    return outputs;
  }

  /**
   * Predictions for one image or many, in order, `batchSize` images per inference call.
   *
   * @template {import('./images.js').ImageInput | import('./images.js').ImageInput[]} T
   * @param {T} images  one image, or an array of them
   * @param {{scoreThreshold?: number}} [options]  overrides the model's score threshold
   * @returns {Promise<T extends any[] ? import('./results.js').Prediction[] : import('./results.js').Prediction>}
   *   one prediction for one image, an array for an array
   */
  async predict(images, options = {}) {
    checkOptions({ scoreThreshold: options?.scoreThreshold });
    const list = Array.isArray(images) ? images : [images];
    const minScore = options.scoreThreshold ?? this.scoreThreshold;
    const [h, w] = this.inputSize;
    const size = h * w * 3;
    const out = [];
    for (let start = 0; start < list.length; start += this.batchSize) {
      const chunk = list.slice(start, start + this.batchSize);
      const batch = new Uint8Array(chunk.length * size);
      const letterboxes = [];
      const sources = [];
      for (let i = 0; i < chunk.length; i++) {
        const { pixels, source } = await toPixels(chunk[i]);
        letterboxes.push(letterbox(pixels, this.inputSize, this.metadata.padValue, batch, i * size).letterbox);
        sources.push(source);
      }
      const outputs = await this.run(batch, chunk.length);
      try {
        out.push(...decodeBatch(outputs, letterboxes, sources, this.metadata, this.layout, minScore));
      } catch (err) {  // outputs the metadata does not describe: name the file
        if (err instanceof ModelFileError) throw new ModelFileError(`${this.source}: ${err.message}`);
        throw err;
      }
    }
    return /** @type {any} */ (Array.isArray(images) ? out : out[0]);
  }

  /** Frees the onnxruntime session. */
  async dispose() {
    await this.session.release?.();
  }
}
