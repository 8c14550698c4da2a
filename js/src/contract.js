/**
 * The vision-tasks ONNX contract, as the JavaScript client reads it: the metadata every
 * exported file carries (`metadata_props`, each value JSON) and the outputs of each task.
 * The Python side is `vision_tasks/contract.py`; this module checks the same things.
 *
 * Input `images`: uint8 `[N, H, W, 3]`, RGB, letterboxed to `input_size` (aspect kept,
 * centred, padded with `letterbox.pad_value`). Outputs, batched (`K = max_detections`,
 * boxes `(x1, y1, x2, y2)` in input pixels):
 * - classify: `scores` float32 `[N, C]` probabilities
 * - localize: `scores` `[N, C]`, `boxes` float32 `[N, 4]`
 * - detect: `boxes` `[N, K, 4]`, `scores` `[N, K]`, `labels` int64 `[N, K]`,
 *   `num_detections` int64 `[N]` (rows sorted by decreasing score, zero past the count)
 * - segment: as detect, plus `masks` float32 `[N, K, H/4, W/4]` probabilities in the input frame
 * A multi-head file (contract version 2, `task: "multi"`) names each head's outputs
 * `<head>.<output>` and describes each head under `heads`.
 *
 * @module contract
 */

/** The newest contract version this client reads. */
export const CONTRACT_VERSION = 2;
export const MULTI_HEAD_VERSION = 2;
export const MULTI_TASK = 'multi';
export const OUTPUT_SEPARATOR = '.';
export const INPUT_NAME = 'images';

/** Detections (detect, segment) scoring below this are left out by default, as in Python. */
export const DEFAULT_SCORE_THRESHOLD = 0.25;

/** Mask probability above which a pixel is the object's, when the file does not say. */
export const DEFAULT_MASK_THRESHOLD = 0.5;

const DETECTIONS = {
  boxes: ['float32', ['N', 'K', 4]], scores: ['float32', ['N', 'K']],
  labels: ['int64', ['N', 'K']], num_detections: ['int64', ['N']],
};

/**
 * Each task's outputs: name -> [element type, shape], the shape with `N` (batch), `C`
 * (classes), `K` (max detections), `Hm`/`Wm` (mask grid) for the sizes that vary.
 * @type {Record<string, Record<string, [string, Array<string | number>]>>}
 */
export const OUTPUT_SPECS = {
  classify: { scores: ['float32', ['N', 'C']] },
  localize: { scores: ['float32', ['N', 'C']], boxes: ['float32', ['N', 4]] },
  detect: DETECTIONS,
  segment: { ...DETECTIONS, masks: ['float32', ['N', 'K', 'Hm', 'Wm']] },
};

/** The outputs of each task this client decodes. @type {Record<string, string[]>} */
export const TASK_OUTPUTS = Object.fromEntries(
  Object.entries(OUTPUT_SPECS).map(([task, outputs]) => [task, Object.keys(outputs)]));

const REQUIRED = ['task', 'class_names', 'input_size', 'layout', 'color', 'dtype', 'letterbox',
  'outputs', 'thresholds', 'max_detections', 'contract_version', 'package_version', 'config'];
const HEAD_KEYS = ['task', 'class_names', 'outputs', 'thresholds', 'max_detections'];
const EXPORT_HINT = 'export a checkpoint with `vision-tasks export RUN/weights/best.pt --out model.onnx`';

/** A model file that is missing, unreadable, not a vision-tasks model, or not for this client. */
export class ModelFileError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ModelFileError';
  }
}

/**
 * @typedef {object} HeadMetadata  One task's part of the metadata (the whole of a
 *   single-task file's, or one head of a multi-head file).
 * @property {string} task  `classify` | `localize` | `detect` | `segment`
 * @property {string[]} classNames  label `i` is `classNames[i]`
 * @property {string[]} outputs  output names, unprefixed, in graph order
 * @property {Record<string, number>} thresholds  e.g. `{score, iou, mask}`; `{}` for classify
 * @property {number | null} maxDetections  K for detect / segment
 * @property {number[] | null} categoryIds  COCO ids of `classNames`, when recorded
 */

/**
 * @typedef {HeadMetadata & {
 *   inputSize: [number, number], padValue: number, contractVersion: number,
 *   packageVersion: string, config: object, heads: Record<string, HeadMetadata> | null,
 *   extra: Record<string, unknown>
 * }} ModelMetadata  The parsed, checked metadata of a vision-tasks ONNX file. `inputSize` is
 *   `[height, width]`; `heads` is set for a multi-head file (task `multi`), in graph order.
 */

function bad(source, key, expected, got) {
  throw new ModelFileError(`${source}: metadata '${key}' should be ${expected}, got ` +
    `${JSON.stringify(got)}; this client reads only the vision-tasks ONNX contract`);
}

function parse(props, key, source) {
  try {
    return JSON.parse(props[key]);
  } catch (err) {
    throw new ModelFileError(`${source}: metadata '${key}' is not valid JSON (${err.message}); ` +
      `re-export the model (${EXPORT_HINT})`);
  }
}

const isInt = (v) => Number.isInteger(v);
const isMapping = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function stringList(value, source, key) {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string')) {
    bad(source, key, 'a non-empty list of str', value);
  }
  return value;
}

function intList(value, source, key) {
  if (!Array.isArray(value) || value.length === 0 || !value.every(isInt)) {
    bad(source, key, 'a non-empty list of int', value);
  }
  return value;
}

function mapping(value, source, key) {
  if (!isMapping(value)) bad(source, key, 'a mapping', value);
  return value;
}

function maxDetections(value, source, key) {
  if (value !== null && !(isInt(value) && value >= 1)) bad(source, key, 'a positive integer or null', value);
  return value;
}

function head(values, source, prefix) {
  const where = (key) => prefix + key;
  if (typeof values.task !== 'string') bad(source, where('task'), 'a task name', values.task);
  const ids = values.category_ids;
  return {
    task: values.task,
    classNames: stringList(values.class_names, source, where('class_names')),
    outputs: stringList(values.outputs, source, where('outputs')),
    thresholds: thresholds(values.thresholds, source, where('thresholds')),
    maxDetections: maxDetections(values.max_detections, source, where('max_detections')),
    categoryIds: ids === undefined || ids === null ? null : categoryIds(ids, values.class_names, source, where('category_ids')),
  };
}

function thresholds(value, source, key) {
  const number = (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1;
  if (!isMapping(value) || !Object.values(value).every(number)) {
    bad(source, key, 'a mapping of names to numbers in [0, 1]', value);
  }
  return value;
}

function categoryIds(value, names, source, key) {
  const ids = intList(value, source, key);
  if (ids.length !== names.length) bad(source, key, `one integer per class name (${names.length})`, value);
  return ids;
}

/**
 * Parses and checks `metadata_props` (key -> JSON text) of a vision-tasks file.
 *
 * @param {Record<string, string>} props
 * @param {string} source  names the file in every error
 * @returns {ModelMetadata}
 * @throws {ModelFileError} not a vision-tasks model, a key missing or malformed, or a
 *   contract version newer than {@link CONTRACT_VERSION}
 */
export function parseMetadata(props, source) {
  if (!('task' in props) || !('contract_version' in props)) {
    throw new ModelFileError(`${source}: not a vision-tasks model (its ONNX metadata has no ` +
      `'task' / 'contract_version'); ${EXPORT_HINT}`);
  }
  /** @type {Record<string, any>} */
  const values = {};
  for (const key of REQUIRED) if (key in props) values[key] = parse(props, key, source);
  const version = values.contract_version;
  if (!isInt(version) || version < 1) bad(source, 'contract_version', 'a positive integer', version);
  if (version > CONTRACT_VERSION) {
    throw new ModelFileError(`${source}: ONNX contract version ${version} is newer than this ` +
      `client understands (${CONTRACT_VERSION}); upgrade the vision-tasks JavaScript package`);
  }
  const multi = version >= MULTI_HEAD_VERSION && values.task === MULTI_TASK;
  const missing = REQUIRED.filter((key) => !(key in values) && !(multi && key === 'class_names'));
  if (multi && !('heads' in props)) missing.push('heads');
  if (missing.length) {
    throw new ModelFileError(`${source}: incomplete vision-tasks metadata (missing ` +
      `${missing.join(', ')}); ${EXPORT_HINT}`);
  }
  for (const [key, expected] of [['layout', 'NHWC'], ['color', 'RGB'], ['dtype', 'uint8']]) {
    if (values[key] !== expected) bad(source, key, JSON.stringify(expected), values[key]);
  }
  const size = values.input_size;
  if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => isInt(v) && v > 0)) {
    bad(source, 'input_size', '[height, width] in pixels', size);
  }
  const box = values.letterbox;
  if (!isMapping(box) || (box.align ?? 'center') !== 'center' || !isInt(box.pad_value) ||
      box.pad_value < 0 || box.pad_value > 255) {
    bad(source, 'letterbox', '{"pad_value": 0..255, "align": "center"}', box);
  }
  const known = new Set([...REQUIRED, 'category_ids', 'heads']);
  const extra = {};
  for (const [key, text] of Object.entries(props)) {
    if (known.has(key)) continue;
    try { extra[key] = JSON.parse(text); } catch { extra[key] = text; }
  }
  const shared = {
    inputSize: /** @type {[number, number]} */ ([size[0], size[1]]),
    padValue: box.pad_value,
    contractVersion: version,
    packageVersion: String(values.package_version),
    config: mapping(values.config, source, 'config'),
    extra,
  };
  if (multi) {
    const raw = mapping(parse(props, 'heads', source), source, 'heads');
    if (Object.keys(raw).length === 0) bad(source, 'heads', 'a mapping of at least one head', raw);
    const heads = {};
    for (const [name, entry] of Object.entries(raw)) {
      if (!isMapping(entry) || HEAD_KEYS.some((k) => !(k in entry))) {
        bad(source, `heads.${name}`, `a mapping with ${HEAD_KEYS.join(', ')}`, entry);
      }
      heads[name] = head(entry, source, `heads.${name}.`);
    }
    return {
      task: MULTI_TASK, classNames: [], outputs: stringList(values.outputs, source, 'outputs'),
      thresholds: {}, maxDetections: null, categoryIds: null, heads, ...shared,
    };
  }
  const ids = 'category_ids' in props ? parse(props, 'category_ids', source) : undefined;
  return { ...head({ ...values, category_ids: ids }, source, ''), heads: null, ...shared };
}

/**
 * The graph output names each head's decoder reads: head name (`""` for a single-task
 * file) -> `{task, outputs: {name in the contract -> name in the graph}}`.
 *
 * @param {ModelMetadata} meta
 * @param {string} source
 * @returns {Map<string, {meta: HeadMetadata, names: Record<string, string>}>}
 * @throws {ModelFileError} a task this client cannot decode
 */
export function headLayout(meta, source) {
  const heads = meta.heads ? Object.entries(meta.heads) : [['', meta]];
  const layout = new Map();
  for (const [name, h] of heads) {
    const expected = TASK_OUTPUTS[h.task];
    if (!expected) {
      throw new ModelFileError(`${source}: a '${h.task}' ${name ? `head (${name}) ` : 'model'}, ` +
        `a task this JavaScript client does not decode (it decodes ${Object.keys(TASK_OUTPUTS).join(', ')})`);
    }
    const prefix = name ? name + OUTPUT_SEPARATOR : '';
    layout.set(name, { meta: h, names: Object.fromEntries(expected.map((o) => [o, prefix + o])) });
  }
  return layout;
}

/**
 * Checks the graph's declared input and outputs against the metadata, as the Python runtime
 * does: one uint8 input `images [N, H, W, 3]`, and the outputs each head's task needs.
 *
 * @param {ModelMetadata} meta
 * @param {import('./onnx-proto.js').OnnxHeader} header
 * @param {string} source
 */
export function checkGraph(meta, header, source) {
  const [h, w] = meta.inputSize;
  const inputs = header.inputs;
  const ok = inputs.length === 1 && inputs[0].name === INPUT_NAME && inputs[0].type === 'uint8' &&
    inputs[0].shape.length === 4 && inputs[0].shape[1] === h && inputs[0].shape[2] === w &&
    inputs[0].shape[3] === 3;
  if (!ok) {
    const got = inputs.map((i) => `${i.name} ${i.type} [${i.shape.join(', ')}]`).join(', ');
    throw new ModelFileError(`${source}: graph input is ${got || 'missing'}; the contract expects ` +
      `'${INPUT_NAME}' uint8 [N, ${h}, ${w}, 3]; re-export the model`);
  }
  const names = new Set(header.outputs.map((o) => o.name));
  for (const [head, { meta: m, names: wanted }] of headLayout(meta, source)) {
    const lacking = Object.values(wanted).filter((n) => !names.has(n));
    if (lacking.length) {
      throw new ModelFileError(`${source}: outputs [${[...names].join(', ')}] lack ` +
        `${lacking.join(', ')} of the ${m.task} contract${head ? ` (head ${head})` : ''}; re-export the model`);
    }
    for (const [output, [type, shape]] of Object.entries(OUTPUT_SPECS[m.task])) {
      checkOutput(header.outputs.find((o) => o.name === wanted[output]), type, shape, m, source);
    }
  }
}

/**
 * One graph output's element type and fixed sizes against the metadata: `C` = the head's
 * class count, `K` = its max_detections, numbers as the contract states them (sizes the graph
 * leaves symbolic are not compared), as the Python runtime checks them.
 */
function checkOutput(output, type, shape, meta, source) {
  if (output.type !== type) {
    throw new ModelFileError(`${source}: output '${output.name}' is ${output.type}, the contract ` +
      `says ${type}; re-export the model`);
  }
  if (output.shape.length !== shape.length) {
    throw new ModelFileError(`${source}: output '${output.name}' has ${output.shape.length} ` +
      `dimensions, the contract ${shape.length} (${shape.join(', ')}); re-export the model`);
  }
  const wanted = { C: meta.classNames.length, K: meta.maxDetections };
  shape.forEach((dim, i) => {
    const got = output.shape[i];
    const need = typeof dim === 'number' ? dim : wanted[dim];
    if (typeof got === 'number' && need !== undefined && need !== null && got !== need) {
      const what = dim === 'C' ? `${need} classes in class_names` : dim === 'K' ? `max_detections ${need}` : String(need);
      throw new ModelFileError(`${source}: output '${output.name}' has size ${got} where its ` +
        'metadata says ' + what + '; the metadata does not describe this graph: re-export the model');
    }
  });
}
