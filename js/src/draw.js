/**
 * Drawing a {@link Prediction} onto a 2D canvas: translucent masks, boxes, labels placed so
 * that they do not stack on each other, class scores, and each head of a multi-head model
 * labelled by its name. Works with any `CanvasRenderingContext2D` or
 * `OffscreenCanvasRenderingContext2D` (the demo page uses it); {@link placeLabels} and
 * {@link maskOverlay} are plain functions of numbers.
 *
 * Coordinates: the prediction's boxes are original-image pixels; `scale` maps them to the
 * canvas (draw the image at `width * scale` by `height * scale` first).
 *
 * @module draw
 */

/** @typedef {import('./results.js').Prediction} Prediction */
/** @typedef {import('./results.js').Detection} Detection */

/** Colours by label (distinct on photographs). */
export const PALETTE = Object.freeze(['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4',
  '#f032e6', '#9a6324', '#469990', '#808000', '#000075', '#e6a700']);

/**
 * The colour of a label.
 * @param {number} label
 * @param {readonly string[]} [palette]
 */
export const colorOf = (label, palette = PALETTE) => palette[label % palette.length];

const rgbOf = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

/**
 * @typedef {object} Shown  What a prediction shows at a threshold.
 * @property {{detection: Detection, head: string}[]} detections  best first within each head;
 *   `head` is `''` for a single-task model
 * @property {{head: string, label: number, name: string, score: number}[]} classes  the top
 *   class of each head with class scores (classify, localize)
 */

/**
 * The detections scoring at least `threshold` (a localize head's one box always) and the top
 * class of each classifying head, head by head.
 * @param {Prediction} prediction
 * @param {number} [threshold=0]
 * @returns {Shown}
 */
export function shownItems(prediction, threshold = 0) {
  const floor = Math.fround(threshold); // scores are float32, as in Python
  const heads = prediction.heads ? Object.entries(prediction.heads) : [['', prediction]];
  const detections = [];
  const classes = [];
  for (const [head, p] of heads) {
    for (const d of p.detections ?? []) {
      if (p.task === 'localize' || d.score >= floor) detections.push({ detection: d, head });
    }
    if (p.scores) classes.push({ head, label: p.label, name: p.name, score: p.score });
  }
  return { detections, classes };
}

/**
 * Label rectangles that do not overlap: each label goes just above its box (inside the box's
 * top when there is no room above), then moves down a label height at a time past the labels
 * placed before it (so place the best first), staying inside the canvas.
 *
 * @param {{box: ArrayLike<number>, width: number}[]} labels  box `[x1, y1, x2, y2]` and label
 *   width, in canvas pixels
 * @param {{width: number, height: number, labelHeight: number}} canvas
 * @returns {{x: number, y: number, width: number, height: number}[]}  top-left corners and sizes
 */
export function placeLabels(labels, { width, height, labelHeight }) {
  const placed = [];
  const overlaps = (r) => placed.some((p) => r.x < p.x + p.width && p.x < r.x + r.width &&
    r.y < p.y + p.height && p.y < r.y + r.height);
  for (const { box, width: w } of labels) {
    const x = Math.max(0, Math.min(box[0], width - w));
    const start = box[1] >= labelHeight ? box[1] - labelHeight : box[1];
    const rect = { x, y: Math.max(0, Math.min(start, height - labelHeight)), width: w, height: labelHeight };
    for (let tries = 0; overlaps(rect) && tries < 200; tries++) {
      rect.y += labelHeight;
      if (rect.y + labelHeight > height) rect.y = 0; // wrapped: keep looking from the top
    }
    placed.push(rect);
  }
  return placed;
}

/**
 * RGBA bytes of an image-sized layer holding every mask in its label's colour (where masks
 * overlap, the colours blend), `alpha` where a mask is and 0 elsewhere; `new ImageData(layer,
 * width, height)` draws it.
 *
 * @param {Detection[]} detections  those with a `mask` are drawn
 * @param {number} width  original image width
 * @param {number} height
 * @param {{palette?: readonly string[], alpha?: number}} [options]  `alpha` 0..255 (110)
 * @returns {Uint8ClampedArray}  `height * width * 4` bytes
 */
export function maskOverlay(detections, width, height, { palette = PALETTE, alpha = 110 } = {}) {
  const px = new Uint8ClampedArray(width * height * 4);
  for (const d of detections) {
    const m = d.mask;
    if (!m) continue;
    const [r, g, b] = rgbOf(colorOf(d.label, palette));
    for (let y = 0; y < m.height; y++) {
      for (let x = 0; x < m.width; x++) {
        if (!m.data[y * m.width + x]) continue;
        const o = ((m.y0 + y) * width + m.x0 + x) * 4;
        const fresh = px[o + 3] === 0;
        px[o] = fresh ? r : (px[o] + r) >> 1;
        px[o + 1] = fresh ? g : (px[o + 1] + g) >> 1;
        px[o + 2] = fresh ? b : (px[o + 2] + b) >> 1;
        px[o + 3] = alpha;
      }
    }
  }
  return px;
}

function layerCanvas(width, height) {
  if (typeof OffscreenCanvas !== 'undefined') return new OffscreenCanvas(width, height);
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  return c;
}

/**
 * @typedef {object} DrawOptions
 * @property {number} [scale=1]  canvas pixels per original-image pixel
 * @property {number} [threshold=0]  detections scoring below are not drawn
 * @property {readonly string[]} [palette]  colours by label ({@link PALETTE})
 * @property {number} [lineWidth=2]
 * @property {number} [fontSize=13]  label text, px
 * @property {string} [fontFamily='system-ui, sans-serif']
 * @property {number} [maskAlpha=110]  0..255
 */

/**
 * Draws `prediction` over its image, which the caller has drawn at `scale`: masks, then boxes
 * and labels (`name score`, a multi-head model's heads as `head: name score`; the best
 * detection on top), then the top class of each classifying head in the top-left corner.
 *
 * @param {CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D} ctx
 * @param {Prediction} prediction
 * @param {DrawOptions} [options]
 * @returns {Shown}  what was drawn
 */
export function drawPrediction(ctx, prediction, options = {}) {
  const { scale = 1, threshold = 0, palette = PALETTE, lineWidth = 2, fontSize = 13,
    fontFamily = 'system-ui, sans-serif', maskAlpha = 110 } = options;
  const shown = shownItems(prediction, threshold);
  const { width, height } = prediction;
  const detections = shown.detections.map((s) => s.detection);
  if (detections.some((d) => d.mask)) {
    const layer = layerCanvas(width, height);
    const lctx = /** @type {CanvasRenderingContext2D} */ (layer.getContext('2d'));
    lctx.putImageData(new ImageData(maskOverlay(detections, width, height, { palette, alpha: maskAlpha }), width, height), 0, 0);
    const smoothing = ctx.imageSmoothingEnabled;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(layer, 0, 0, width * scale, height * scale);
    ctx.imageSmoothingEnabled = smoothing;
  }
  const labelHeight = Math.round(fontSize * 1.4);
  ctx.lineWidth = lineWidth;
  ctx.font = `600 ${fontSize}px ${fontFamily}`;
  ctx.textBaseline = 'top';
  const texts = shown.detections.map(({ detection: d, head }) => `${head ? `${head}: ` : ''}${d.name} ${d.score.toFixed(2)}`);
  const boxes = detections.map((d) => d.box.map((v) => v * scale));
  const rects = placeLabels(boxes.map((box, i) => ({ box, width: ctx.measureText(texts[i]).width + 8 })),
    { width: width * scale, height: height * scale, labelHeight });
  for (let i = detections.length - 1; i >= 0; i--) { // the best last: on top
    const [x1, y1, x2, y2] = boxes[i];
    const color = colorOf(detections[i].label, palette);
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.fillStyle = color;
    ctx.fillRect(rects[i].x, rects[i].y, rects[i].width, rects[i].height);
    ctx.fillStyle = '#fff';
    ctx.fillText(texts[i], rects[i].x + 4, rects[i].y + (labelHeight - fontSize) / 2);
  }
  shown.classes.forEach((c, i) => {
    const text = `${c.head ? `${c.head}: ` : ''}${c.name} ${c.score.toFixed(2)}`;
    const y = 8 + i * (labelHeight + 4);
    ctx.fillStyle = 'rgba(20, 24, 32, 0.75)';
    ctx.fillRect(8, y, ctx.measureText(text).width + 12, labelHeight);
    ctx.fillStyle = '#fff';
    ctx.fillText(text, 14, y + (labelHeight - fontSize) / 2);
  });
  return shown;
}
