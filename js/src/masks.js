/**
 * Instance masks: the segment contract's `masks [K, Hm, Wm]` (probabilities over the
 * letterboxed input, `Hm = H / 4`) -> per-object bitmaps over the original image, and their
 * COCO run-length encoding. The Python side is `vision_tasks/masks.py` (`resample_mask`).
 *
 * One bilinear resampling maps the mask straight to original pixels: the centre
 * `(x + 0.5, y + 0.5)` of original pixel `(x, y)` sits at
 * `((x + 0.5) * scale + padX) * Wm / W - 0.5` in mask index units (likewise y); samples
 * outside the mask repeat its border; a pixel is the object's when the interpolated
 * probability is `> threshold`. Only the object's box, grown by one mask pixel plus one
 * pixel on each side, is computed (contract masks are zero outside their box).
 *
 * The arithmetic is that of OpenCV 5's `warpAffine(INTER_LINEAR, BORDER_REPLICATE)` on
 * float32, which the Python runtime calls: float32 matrix, sample coordinates and weights,
 * fused multiply-adds (`v0 = p00 + a * (p01 - p00)`, ...), 16-column SIMD blocks then a
 * scalar tail. JavaScript has no float32 fused multiply-add; `fround(a * b + c)` in double
 * is the same but for double rounding, which can move a value by one float32 unit in rare
 * cases: a pixel can then differ only where the probability is within ~1e-7 of the threshold.
 *
 * @module masks
 */

import { Letterbox } from './letterbox.js';

const f32 = Math.fround;
/** float32 fused multiply-add `a * b + c` (operands float32: the product is exact in double). */
const fma = (a, b, c) => f32(a * b + c);
/** Columns OpenCV's x86 AVX2 warpAffine computes per SIMD block (2 x 8 float32 lanes). */
const SIMD_BLOCK = 16;

/**
 * A bitmap of one object over a `imageWidth x imageHeight` image, stored as the rectangle
 * `[x0, x0 + width) x [y0, y0 + height)` that holds it (zero outside).
 */
export class Mask {
  /**
   * @param {Uint8Array} data  `height * width` bytes, 1 inside the object, 0 outside, rows first
   * @param {number} x0  the rectangle's left column in the image
   * @param {number} y0  its top row
   * @param {number} width  the rectangle's width
   * @param {number} height  its height
   * @param {number} imageWidth
   * @param {number} imageHeight
   */
  constructor(data, x0, y0, width, height, imageWidth, imageHeight) {
    this.data = data;
    this.x0 = x0;
    this.y0 = y0;
    this.width = width;
    this.height = height;
    this.imageWidth = imageWidth;
    this.imageHeight = imageHeight;
  }

  /** An empty mask of a `imageWidth x imageHeight` image. */
  static empty(imageWidth, imageHeight) {
    return new Mask(new Uint8Array(0), 0, 0, 0, 0, imageWidth, imageHeight);
  }

  /** Whether image pixel `(x, y)` (column, row) is the object's. */
  at(x, y) {
    const cx = x - this.x0;
    const cy = y - this.y0;
    return cx >= 0 && cy >= 0 && cx < this.width && cy < this.height && this.data[cy * this.width + cx] === 1;
  }

  /** The number of the object's pixels. */
  area() {
    let n = 0;
    for (let i = 0; i < this.data.length; i++) n += this.data[i];
    return n;
  }

  /**
   * The bitmap of the whole image: `imageHeight * imageWidth` bytes, 1 inside the object.
   * @returns {Uint8Array}
   */
  full() {
    const out = new Uint8Array(this.imageWidth * this.imageHeight);
    for (let r = 0; r < this.height; r++) {
      out.set(this.data.subarray(r * this.width, (r + 1) * this.width), (this.y0 + r) * this.imageWidth + this.x0);
    }
    return out;
  }

  /**
   * Uncompressed COCO RLE counts of {@link full}: runs in column-major order, zeros first.
   * @returns {number[]}
   */
  counts() {
    const H = this.imageHeight;
    const counts = [];
    let value = 0;
    let run = 0;
    const add = (v, n) => {
      if (n === 0) return;
      if (v === value) { run += n; return; }
      counts.push(run);
      value = v;
      run = n;
    };
    add(0, this.x0 * H);
    for (let c = 0; c < this.width; c++) {
      add(0, this.y0);
      for (let r = 0; r < this.height; r++) add(this.data[r * this.width + c], 1);
      add(0, H - this.y0 - this.height);
    }
    add(0, (this.imageWidth - this.x0 - this.width) * H);
    counts.push(run);
    return counts;
  }

  /**
   * Compressed COCO RLE `{size: [H, W], counts: string}`, what `pycocotools.mask.encode` gives
   * (and the Python runtime's `Detection.to_dict()` writes).
   */
  rle() {
    return { size: [this.imageHeight, this.imageWidth], counts: compressCounts(this.counts()) };
  }

  /**
   * RGBA pixels of the whole image for drawing (e.g. `ctx.putImageData` on a layer):
   * `color` where the object is, transparent elsewhere.
   * @param {[number, number, number, number]} color  r, g, b, alpha (0..255)
   * @returns {Uint8ClampedArray}
   */
  toRGBA(color) {
    const out = new Uint8ClampedArray(this.imageWidth * this.imageHeight * 4);
    for (let r = 0; r < this.height; r++) {
      for (let c = 0; c < this.width; c++) {
        if (this.data[r * this.width + c]) out.set(color, ((this.y0 + r) * this.imageWidth + this.x0 + c) * 4);
      }
    }
    return out;
  }
}

/**
 * COCO's string form of RLE counts (pycocotools `rleToString`): each count (from the third
 * on, its difference to the count two before) in 5-bit groups, low first, one character
 * `48 + group` each; 0x20 marks that a group follows, the last group's 0x10 is the sign.
 * @param {number[]} counts
 * @returns {string}
 */
export function compressCounts(counts) {
  let out = '';
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i] - (i > 2 ? counts[i - 2] : 0);
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x = Math.floor(x / 32);
      more = (c & 0x10) ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out += String.fromCharCode(c + 48);
    }
  }
  return out;
}

/**
 * Decodes COCO RLE (compressed string or counts list) into a full bitmap, rows first.
 * @param {{size: [number, number], counts: string | number[]}} rle
 * @returns {Uint8Array}  `H * W` bytes
 */
export function decodeRle(rle) {
  const [H, W] = rle.size;
  let counts = rle.counts;
  if (typeof counts === 'string') {
    const parsed = [];
    let value = 0;
    let shift = 0;
    for (let k = 0; k < counts.length; k++) {
      const group = counts.charCodeAt(k) - 48;
      value += (group & 0x1f) * 2 ** shift;
      shift += 5;
      if (group & 0x20) continue;
      if (group & 0x10) value -= 2 ** shift;
      if (parsed.length > 2) value += parsed[parsed.length - 2];
      parsed.push(value);
      value = 0;
      shift = 0;
    }
    counts = parsed;
  }
  const out = new Uint8Array(H * W);
  let pos = 0;
  counts.forEach((n, i) => {
    if (i % 2 === 1) {
      for (let p = pos; p < pos + n; p++) out[(p % H) * W + Math.floor(p / H)] = 1;
    }
    pos += n;
  });
  if (pos !== H * W) throw new Error(`RLE counts sum to ${pos}, but size ${H}x${W} has ${H * W} pixels`);
  return out;
}

/**
 * Mask probabilities over the model input -> the object's bitmap over the original image,
 * computed inside `box` only (see the module's description).
 *
 * @param {Float32Array} probs  `[Hm, Wm]` probabilities, rows first
 * @param {number} hm
 * @param {number} wm
 * @param {Letterbox} lb  the image's letterbox
 * @param {number} threshold  probability above which a pixel is the object's
 * @param {ArrayLike<number> | null} box  `[x1, y1, x2, y2]` in original pixels, or null for
 *   the whole image
 * @returns {Mask}
 */
export function resampleMask(probs, hm, wm, lb, threshold, box) {
  const [inH, inW] = lb.size;
  const sx = wm / inW;
  const sy = hm / inH;
  let x0 = 0;
  let y0 = 0;
  let x1 = lb.width;
  let y1 = lb.height;
  if (box) {
    const [bx1, by1, bx2, by2] = box;
    if (!(bx2 > bx1 && by2 > by1)) return Mask.empty(lb.width, lb.height);
    const mx = 1 / (lb.scale * sx) + 1;
    const my = 1 / (lb.scale * sy) + 1;
    x0 = Math.max(0, Math.floor(bx1 - mx));
    x1 = Math.min(lb.width, Math.ceil(bx2 + mx));
    y0 = Math.max(0, Math.floor(by1 - my));
    y1 = Math.min(lb.height, Math.ceil(by2 + my));
  }
  if (x1 <= x0 || y1 <= y0) return Mask.empty(lb.width, lb.height);
  const width = x1 - x0;
  const height = y1 - y0;
  // Crop pixel (x, y) -> mask index coordinates: u = m0 * x + m2, v = m4 * y + m5.
  const m0 = f32(lb.scale * sx);
  const m2 = f32(((x0 + 0.5) * lb.scale + lb.padX) * sx - 0.5);
  const m4 = f32(lb.scale * sy);
  const m5 = f32(((y0 + 0.5) * lb.scale + lb.padY) * sy - 0.5);
  const cut = f32(threshold);
  const data = new Uint8Array(width * height);
  // OpenCV's SIMD loop runs `for (x = 0; x < width - 16; x += 16)`, the rest is scalar.
  const simdEnd = width > SIMD_BLOCK ? Math.ceil((width - SIMD_BLOCK) / SIMD_BLOCK) * SIMD_BLOCK : 0;
  const us = new Float32Array(width);
  for (let x = 0; x < width; x++) us[x] = x < simdEnd ? fma(m0, x, m2) : f32(f32(x * m0) + m2);
  const lastX = wm - 1;
  const lastY = hm - 1;
  for (let y = 0; y < height; y++) {
    const v = f32(f32(y * m4) + m5);
    const iy = Math.floor(v);
    const beta = f32(v - iy);
    const r0 = Math.min(Math.max(iy, 0), lastY) * wm;
    const r1 = Math.min(Math.max(iy + 1, 0), lastY) * wm;
    for (let x = 0; x < width; x++) {
      const u = us[x];
      const ix = Math.floor(u);
      const alpha = f32(u - ix);
      const c0 = Math.min(Math.max(ix, 0), lastX);
      const c1 = Math.min(Math.max(ix + 1, 0), lastX);
      const p00 = probs[r0 + c0];
      const p01 = probs[r0 + c1];
      const p10 = probs[r1 + c0];
      const p11 = probs[r1 + c1];
      const top = fma(alpha, f32(p01 - p00), p00);
      const bottom = fma(alpha, f32(p11 - p10), p10);
      const value = fma(beta, f32(bottom - top), top);
      data[y * width + x] = value > cut ? 1 : 0;
    }
  }
  return new Mask(data, x0, y0, width, height, lb.width, lb.height);
}
