// The demo page: choose (or drop) a model and an image; the model runs in this page with
// onnxruntime-web, and its boxes, labels, scores and masks are drawn over the image.
// Query parameters load files by URL: ?model=URL&image=URL&backend=wasm|webgpu&threshold=0.25
// The drawing is the package's own (drawPrediction); this file runs from an installed package
// as from the checkout (serve it with `npx vision-tasks-demo`, scripts/serve.js).

import { colorOf, drawPrediction, VisionModel } from '../src/index.js';

const $ = (id) => document.getElementById(id);
const canvas = /** @type {HTMLCanvasElement} */ ($('canvas'));
const stage = $('stage');
const status = $('status');

/** What the page holds: the model, the image, its prediction (all detections, threshold 0). */
const state = { model: null, modelName: '', modelSource: null, backend: '', image: null, imageName: '',
  prediction: null, millis: 0, outcome: 'waiting', modelError: '' };

function say(text, error = false) {
  status.textContent = text;
  status.classList.toggle('error', error);
}


// Loads and runs happen one at a time, in the order asked (two onnxruntime-web sessions
// must not start at once); `body[data-state]` is "busy" until the last one has finished,
// then "done" (drawn), "waiting" (a file is missing) or "error".
let queue = Promise.resolve();
let pending = 0;
function enqueue(job) {
  pending++;
  document.body.dataset.state = 'busy';
  queue = queue.then(job).catch((err) => {
    state.outcome = 'error';
    say(err.message, true);
    console.error(err);
  }).finally(() => {
    pending--;
    if (pending === 0) document.body.dataset.state = state.outcome;
  });
  return queue;
}

function loadModel(source, name) {
  const backend = $('backend').value;
  return enqueue(async () => {
    say(`Loading ${name} (${backend})…`);
    await state.model?.dispose();
    state.model = null;
    state.prediction = null;
    try {
      state.model = await VisionModel.load(source, { backend, scoreThreshold: 0 });
      state.modelError = '';
    } catch (err) {
      state.modelError = err.message.includes(name) ? err.message : `${name}: ${err.message}`;
      throw new Error(state.modelError);
    }
    state.modelName = name;
    state.modelSource = source;
    state.backend = backend;
    await runNow();
  });
}

function loadImage(blob, name) {
  return enqueue(async () => {
    state.image?.close?.();
    state.image = null;
    try {
      state.image = await createImageBitmap(blob, { imageOrientation: 'from-image', premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
    } catch (err) {
      throw new Error(`${name}: cannot read this image (${err.message})`);
    }
    state.imageName = name;
    await runNow();
  });
}

/** Runs the model on the image once both are there, and draws the result. */
async function runNow() {
  if (!state.image || !state.model) {
    if (state.image) draw(null);
    if (state.modelError) { // a model that failed to load stays the news until another loads
      say(state.modelError, true);
      state.outcome = 'error';
      return;
    }
    say(state.model ? `${describe()} — now choose or drop an image.` : 'Now choose or drop a model (.onnx).');
    state.outcome = 'waiting';
    return;
  }
  say(`Running ${state.modelName} on ${state.imageName}…`);
  try {
    const start = performance.now();
    state.prediction = await state.model.predict(state.image);
    state.millis = performance.now() - start;
  } catch (err) {
    throw new Error(`${state.modelName} on ${state.imageName}: ${err.message}`);
  }
  render();
  state.outcome = 'done';
}

function describe() {
  const m = state.model;
  const [h, w] = m.inputSize;
  const classes = m.metadata.heads ? `${Object.keys(m.metadata.heads).length} heads` : `${m.classNames.length} classes`;
  return `${state.modelName}: ${m.task}, ${classes}, input ${w}×${h}, ${m.backend}${m.backendNote ? ` (${m.backendNote})` : ''}`;
}

function render() {
  if (!state.prediction) return;
  const threshold = Number($('threshold').value) || 0;
  const { detections, classes } = draw(state.prediction, threshold);
  list(detections, classes);
  const heads = state.prediction.heads ? Object.values(state.prediction.heads) : [state.prediction];
  const total = heads.reduce((n, p) => n + (p.detections?.length ?? 0), 0);
  const found = classes.length && !detections.length
    ? `${classes[0].name} ${classes[0].score.toFixed(3)}`
    : `${detections.length} detection${detections.length === 1 ? '' : 's'} ≥ ${$('threshold').value} (of ${total})`;
  say(`${describe()} · ${state.imageName} ${state.image.width}×${state.image.height} · ${found} · ${state.millis.toFixed(0)} ms`);
  canvas.dataset.drawn = String(detections.length);
}

/** The image at a scale that keeps text legible, and the prediction over it (none: the image alone). */
function draw(prediction, threshold = 0) {
  const image = state.image;
  const k = Math.max(1, Math.min(8, 640 / Math.max(image.width, image.height)));
  canvas.width = Math.round(image.width * k);
  canvas.height = Math.round(image.height * k);
  const ctx = canvas.getContext('2d');
  ctx.imageSmoothingEnabled = k < 2;
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  stage.classList.remove('empty');
  if (!prediction) return { detections: [], classes: [] };
  return drawPrediction(ctx, prediction, { scale: k, threshold });
}

/** The list beside the picture: detections (per head), else each classifying head's top classes. */
function list(shown, classes) {
  const detections = shown.map((s) => ({ ...s.detection, name: s.head ? `${s.head}: ${s.detection.name}` : s.detection.name,
    box: s.detection.box, mask: s.detection.mask }));
  const classified = classes.map((c) => (state.prediction.heads ? state.prediction.heads[c.head] : state.prediction));
  const ol = $('results');
  ol.replaceChildren();
  const row = (color, name, score) => {
    const li = document.createElement('li');
    li.innerHTML = '<span class="swatch"></span><span class="name"></span><span class="score"></span><span class="bar"><span></span></span>';
    li.querySelector('.swatch').style.background = color;
    li.querySelector('.name').textContent = name;
    li.querySelector('.score').textContent = score.toFixed(3);
    li.querySelector('.bar span').style.width = `${(score * 100).toFixed(1)}%`;
    return li;
  };
  if (detections.length || !classified.length) {
    $('summary').textContent = `${detections.length} detection${detections.length === 1 ? '' : 's'}`;
    for (const d of detections) {
      const li = row(colorOf(d.label), d.name, d.score);
      li.classList.add('detection');
      li.title = `box ${d.box.map((v) => v.toFixed(1)).join(', ')}${d.mask ? `, mask ${d.mask.area()} px` : ''}`;
      ol.append(li);
    }
  } else {
    $('summary').textContent = 'Top classes';
  }
  for (const p of classified) {
    for (const c of p.top(5)) ol.append(row(colorOf(c.label), c.name, c.score));
  }
}

$('model').addEventListener('change', (e) => {
  const file = e.target.files[0];
  if (file) loadModel(file, file.name);
});
$('image').addEventListener('change', (e) => {
  const file = e.target.files[0];
  if (file) loadImage(file, file.name);
});
$('threshold').addEventListener('input', render);
$('backend').addEventListener('change', () => { // the same model again, on the other backend
  if (state.modelSource && $('backend').value !== state.backend) loadModel(state.modelSource, state.modelName);
});
for (const type of ['dragenter', 'dragover']) {
  stage.addEventListener(type, (e) => { e.preventDefault(); stage.classList.add('drag'); });
}
stage.addEventListener('dragleave', () => stage.classList.remove('drag'));
stage.addEventListener('drop', (e) => {
  e.preventDefault();
  stage.classList.remove('drag');
  for (const file of e.dataTransfer.files) {
    if (file.name.toLowerCase().endsWith('.onnx')) loadModel(file, file.name);
    else loadImage(file, file.name);
  }
});

const params = new URLSearchParams(location.search);
if (params.get('backend')) $('backend').value = params.get('backend');
if (params.get('threshold')) $('threshold').value = params.get('threshold');
document.body.dataset.state = 'waiting';
if (params.get('image')) {
  const url = params.get('image');
  enqueue(async () => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    loadImage(await response.blob(), url.split('/').pop());
  });
}
if (params.get('model')) loadModel(params.get('model'), params.get('model').split('/').pop());
