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

/** Images per inference call, as in the Python runtime. */
export const DEFAULT_BATCH_SIZE = 32;

const IN_NODE = typeof process !== 'undefined' && Boolean(process.versions?.node);

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
 *   default `onnxruntime-node` or `onnxruntime-web` is imported by name, from where this
 *   package lies (in a page without a bundler, map that name in an import map, or pass `ort`)
 * @property {string} [task]  when given, the model must be of this task
 * @property {number} [scoreThreshold=0.25]  detections (detect, segment) scoring below this
 *   are left out; 0 keeps all the graph returns
 * @property {number} [batchSize=32]  images per inference call
 * @property {number} [threads]  intra-op threads (node: default all cores; wasm: sets
 *   `ort.env.wasm.numThreads`, which needs a cross-origin-isolated page to exceed 1)
 * @property {object} [sessionOptions]  more onnxruntime `InferenceSession` options
 */

async function readBytes(source) {
  if (source instanceof Uint8Array) return { bytes: source, name: '<bytes>' };
  if (source instanceof ArrayBuffer) return { bytes: new Uint8Array(source), name: '<bytes>' };
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return { bytes: new Uint8Array(await source.arrayBuffer()), name: source.name ?? '<Blob>' };
  }
  const name = String(source);
  if (typeof source !== 'string' && !(source instanceof URL)) {
    throw new TypeError(`VisionModel.load takes a URL, a path (Node), bytes or a Blob, got ${typeof source}`);
  }
  // In Node, a path or a file: URL is read from disk; anything else (http:, https:, data:, a
  // relative URL in a page) is fetched.
  const scheme = source instanceof URL ? source.protocol : /^([a-z][a-z0-9+.-]+:)\/\//i.exec(source)?.[1];
  if (IN_NODE && (!scheme || scheme === 'file:')) {
    const { readFile } = await import('node:fs/promises');
    try {
      return { bytes: new Uint8Array(await readFile(scheme ? new URL(source) : source)), name };
    } catch (err) {
      throw new ModelFileError(`${name}: cannot read the model file (${err.code ?? err.message}); ` +
        'export one with `vision-tasks export RUN/weights/best.pt --out model.onnx`');
    }
  }
  let response;
  try {
    response = await fetch(source);
  } catch (err) {
    throw new ModelFileError(`${name}: cannot fetch the model (${err.message})`);
  }
  if (!response.ok) throw new ModelFileError(`${name}: cannot fetch the model (HTTP ${response.status})`);
  return { bytes: new Uint8Array(await response.arrayBuffer()), name };
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
   * @param {string | URL | Uint8Array | ArrayBuffer | Blob} source  a URL (fetched), a file
   *   path or `file:` URL (Node), or the file's bytes
   * @param {LoadOptions} [options]
   * @returns {Promise<VisionModel>}
   * @throws {ModelFileError} missing or unreadable file, not a vision-tasks model, a newer
   *   contract, a task this client does not decode, or not the `task` asked for
   */
  static async load(source, options = {}) {
    const { bytes, name } = await readBytes(source);
    let header;
    try {
      header = readOnnxHeader(bytes);
    } catch (err) {
      if (!(err instanceof ProtobufError)) throw err;
      throw new ModelFileError(`${name}: not an ONNX model (${err.message}); ` +
        'export one with `vision-tasks export RUN/weights/best.pt --out model.onnx`');
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
    if (!spec) throw new TypeError(`unknown backend '${backend}'; use ${Object.keys(BACKENDS).join(', ')}`);
    const ort = options.ort ?? await import(spec.module);
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
    this.layout = headLayout(meta, options.source);
    /** The backend really in use (`webgpu` falls back to `wasm` where it cannot run the model). */
    this.backend = options.backend;
    /** Why the backend asked for is not the one in use ('' when it is). */
    this.backendNote = options.backendNote ?? '';
    this.source = options.source;
    this.scoreThreshold = options.scoreThreshold ?? DEFAULT_SCORE_THRESHOLD;
    if (!(this.scoreThreshold >= 0 && this.scoreThreshold <= 1)) {
      throw new RangeError(`scoreThreshold must be in [0, 1], got ${this.scoreThreshold}`);
    }
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!(Number.isInteger(this.batchSize) && this.batchSize >= 1)) {
      throw new RangeError(`batchSize must be a positive integer, got ${this.batchSize}`);
    }
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
      out.push(...decodeBatch(outputs, letterboxes, sources, this.metadata, this.layout, minScore));
    }
    return /** @type {any} */ (Array.isArray(images) ? out : out[0]);
  }

  /** Frees the onnxruntime session. */
  async dispose() {
    await this.session.release?.();
  }
}
