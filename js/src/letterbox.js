/**
 * Letterboxing, as the Python runtime does it (`vision_tasks/imaging.py`): the image is
 * resized to fit the model input with its aspect ratio kept, centred, and the border filled
 * with the pad value (114).
 *
 * - `scale = min(H / height, W / width)`; the resized size is `round(width * scale)` by
 *   `round(height * scale)` (Python's round: ties to even), at least 1 and at most the input;
 * - the padding is split evenly, the odd pixel going right / bottom;
 * - `x_input = x_original * scale + padX` (likewise y);
 * - the resize is bilinear and gives the same bytes as OpenCV's `cv2.resize(...,
 *   INTER_LINEAR)` on uint8 images, which the Python runtime uses: the same sample positions
 *   (pixel centres, `(d + 0.5) * src / dst - 0.5`, in float32), the same 11-bit weights and
 *   the same integer rounding of its SIMD path (see {@link resizeBilinear}). Measured against
 *   OpenCV 5.0 in the test suite (test/letterbox.test.js): identical bytes on random images,
 *   upscaling and downscaling, odd sizes.
 *
 * Coordinates are continuous: pixel column `c` covers `[c, c + 1)`; boxes are
 * `[x1, y1, x2, y2]`; a model input size is `[height, width]`.
 *
 * @module letterbox
 */

import { roundHalfEven } from './rounding.js';

/**
 * @typedef {object} Pixels  An image in memory: rows top to bottom, pixels left to right.
 * @property {Uint8Array | Uint8ClampedArray} data  `height * width * channels` bytes
 * @property {number} width
 * @property {number} height
 * @property {number} channels  1 (gray), 3 (RGB) or 4 (RGBA: the alpha is dropped, not composited)
 */

/** How an original image was mapped into the model input (Python's `Letterbox`). */
export class Letterbox {
  /**
   * @param {number} scale  resize factor, original -> input pixels
   * @param {number} padX  left padding, input pixels
   * @param {number} padY  top padding, input pixels
   * @param {number} width  original image width
   * @param {number} height  original image height
   * @param {[number, number]} size  model input `[height, width]`
   */
  constructor(scale, padX, padY, width, height, size) {
    this.scale = scale;
    this.padX = padX;
    this.padY = padY;
    this.width = width;
    this.height = height;
    this.size = size;
  }

  /**
   * The letterbox of a `width x height` image in a model input of `size`.
   * @param {number} width
   * @param {number} height
   * @param {[number, number]} size  `[height, width]` of the model input
   * @returns {Letterbox}
   */
  static fit(width, height, size) {
    const [inH, inW] = size;
    const { scale, newW, newH } = fit(height, width, inH, inW);
    return new Letterbox(scale, Math.floor((inW - newW) / 2), Math.floor((inH - newH) / 2),
      width, height, [inH, inW]);
  }

  /** `[height, width]` of the resized image inside the input, before the padding. */
  resizedSize() {
    const { newW, newH } = fit(this.height, this.width, this.size[0], this.size[1]);
    return [newH, newW];
  }

  /**
   * A box from input pixels to original-image pixels, clipped to the image, rounded to
   * float32 as the Python runtime's boxes are.
   * @param {ArrayLike<number>} box  `[x1, y1, x2, y2]` in input pixels
   * @returns {[number, number, number, number]}
   */
  boxToOriginal(box) {
    const { scale, padX, padY, width, height } = this;
    const clip = (v, hi) => Math.fround(Math.min(Math.max(v, 0), hi));
    return [clip((box[0] - padX) / scale, width), clip((box[1] - padY) / scale, height),
      clip((box[2] - padX) / scale, width), clip((box[3] - padY) / scale, height)];
  }

  /**
   * A box from original pixels to input pixels (no clipping): the inverse of
   * {@link boxToOriginal} for boxes inside the image.
   * @param {ArrayLike<number>} box
   * @returns {[number, number, number, number]}
   */
  boxToInput(box) {
    const { scale, padX, padY } = this;
    return [box[0] * scale + padX, box[1] * scale + padY, box[2] * scale + padX, box[3] * scale + padY]
      .map(Math.fround);
  }

  /** Python's `Letterbox.to_dict()`. */
  toDict() {
    return { scale: this.scale, pad_x: this.padX, pad_y: this.padY, width: this.width,
      height: this.height, size: [...this.size] };
  }
}

function fit(h, w, inH, inW) {
  const scale = Math.min(inH / h, inW / w);
  return {
    scale,
    newW: Math.min(inW, Math.max(1, roundHalfEven(w * scale))),
    newH: Math.min(inH, Math.max(1, roundHalfEven(h * scale))),
  };
}

/**
 * Letterboxes `image` into `out` (uint8 `[H, W, 3]` RGB at `offset`, e.g. one image of a
 * batch), or into a new array.
 *
 * @param {Pixels} image
 * @param {[number, number]} size  model input `[height, width]`
 * @param {number} [padValue=114]
 * @param {Uint8Array} [out]  the destination, `H * W * 3` bytes from `offset` on
 * @param {number} [offset=0]
 * @returns {{input: Uint8Array, letterbox: Letterbox}}  `input` is `out` (or the new array)
 */
export function letterbox(image, size, padValue = 114, out, offset = 0) {
  checkPixels(image);
  const [inH, inW] = size;
  const geometry = Letterbox.fit(image.width, image.height, [inH, inW]);
  const input = out ?? new Uint8Array(inH * inW * 3);
  const [newH, newW] = geometry.resizedSize();
  const view = input.subarray(offset, offset + inH * inW * 3);
  if (newW !== inW || newH !== inH) view.fill(padValue);
  resizeBilinear(image, newW, newH, view, inW * 3, (geometry.padY * inW + geometry.padX) * 3);
  return { input, letterbox: geometry };
}

/**
 * Checks that `image` is a {@link Pixels}.
 * @param {Pixels} image
 */
export function checkPixels(image) {
  const { data, width, height, channels } = image ?? {};
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray) || !Number.isInteger(width) ||
      !Number.isInteger(height) || width < 1 || height < 1 || ![1, 3, 4].includes(channels) ||
      data.length < width * height * channels) {
    throw new TypeError('expected pixels {data: Uint8Array | Uint8ClampedArray, width, height, ' +
      'channels: 1 | 3 | 4} with width * height * channels bytes, got ' +
      `${data?.constructor?.name ?? typeof data} of ${data?.length} bytes, ${width}x${height}x${channels}`);
  }
}

const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS; // 2048: OpenCV's INTER_RESIZE_COEF_SCALE

/**
 * Sample positions and 11-bit weights of one axis, as OpenCV's INTER_LINEAR computes them:
 * `f = float32((d + 0.5) * (src / dst) - 0.5)`, `s = floor(f)`, weights
 * `round(float32(1 - (f - s)) * 2048)` and `round(float32(f - s) * 2048)` (ties to even).
 * With `clamp`, a sample left of the first pixel or right of the last takes that pixel
 * with weight 2048 (OpenCV's horizontal pass); without it (its vertical pass) the weights
 * stay and both taps read the clamped pixel, which its rounding tells apart.
 */
function axis(dst, src, clamp) {
  const first = new Int32Array(dst);
  const second = new Int32Array(dst);
  const w0 = new Int32Array(dst);
  const w1 = new Int32Array(dst);
  const step = 1 / (dst / src);
  for (let d = 0; d < dst; d++) {
    let f = Math.fround((d + 0.5) * step - 0.5);
    let s = Math.floor(f);
    f = Math.fround(f - s);
    if (clamp && s < 0) { f = 0; s = 0; }
    if (clamp && s >= src - 1) { f = 0; s = src - 1; }
    w0[d] = roundHalfEven(Math.fround(Math.fround(1 - f) * COEF_SCALE));
    w1[d] = roundHalfEven(Math.fround(f * COEF_SCALE));
    first[d] = Math.min(Math.max(s, 0), src - 1);
    second[d] = Math.min(Math.max(s + 1, 0), src - 1);
  }
  return { first, second, w0, w1 };
}

/**
 * Bilinear resize of `image` to `newW x newH` RGB, written into `out` from `start` on with
 * `rowStride` bytes per output row: OpenCV's `resize(INTER_LINEAR)` of uint8 images, bit for
 * bit. A horizontal pass gives each source row as integers `p0 * a0 + p1 * a1` (weights of
 * 2048 in all); the vertical pass combines two such rows as OpenCV's SIMD code does:
 * `((b0 * (S0 >> 4)) >> 16) + ((b1 * (S1 >> 4)) >> 16) + 2) >> 2`.
 *
 * @param {Pixels} image
 * @param {number} newW
 * @param {number} newH
 * @param {Uint8Array} out
 * @param {number} rowStride
 * @param {number} start
 */
export function resizeBilinear(image, newW, newH, out, rowStride, start) {
  const { data, width, height, channels: cn } = image;
  if (newW === width && newH === height) { // no resize: copy (RGB out of any channel count)
    for (let y = 0; y < height; y++) {
      let o = start + y * rowStride;
      let i = y * width * cn;
      for (let x = 0; x < width; x++, i += cn, o += 3) {
        out[o] = data[i];
        out[o + 1] = data[cn === 1 ? i : i + 1];
        out[o + 2] = data[cn === 1 ? i : i + 2];
      }
    }
    return;
  }
  const xs = axis(newW, width, true);
  const ys = axis(newH, height, false);
  // The horizontal pass of source row `y`, cached for the two rows the last output row used.
  const rows = [new Int32Array(newW * 3), new Int32Array(newW * 3)];
  const rowOf = [-1, -1];
  const horizontal = (y, slot) => {
    const row = rows[slot];
    const base = y * width * cn;
    for (let x = 0, o = 0; x < newW; x++, o += 3) {
      const i0 = base + xs.first[x] * cn;
      const i1 = base + xs.second[x] * cn;
      const a0 = xs.w0[x];
      const a1 = xs.w1[x];
      if (cn === 1) {
        row[o] = row[o + 1] = row[o + 2] = data[i0] * a0 + data[i1] * a1;
      } else {
        row[o] = data[i0] * a0 + data[i1] * a1;
        row[o + 1] = data[i0 + 1] * a0 + data[i1 + 1] * a1;
        row[o + 2] = data[i0 + 2] * a0 + data[i1 + 2] * a1;
      }
    }
    rowOf[slot] = y;
    return row;
  };
  const get = (y) => {
    if (rowOf[0] === y) return rows[0];
    if (rowOf[1] === y) return rows[1];
    // Keep the row the next call may ask for again (the other one of this output row).
    const slot = rowOf[0] < rowOf[1] ? 0 : 1;
    return horizontal(y, slot);
  };
  for (let dy = 0; dy < newH; dy++) {
    const y0 = ys.first[dy];
    const y1 = ys.second[dy];
    const s0 = get(y0);
    const s1 = y1 === y0 ? s0 : get(y1);
    const b0 = ys.w0[dy];
    const b1 = ys.w1[dy];
    let o = start + dy * rowStride;
    for (let k = 0; k < newW * 3; k++, o++) {
      const v = (((b0 * (s0[k] >> 4)) >> 16) + ((b1 * (s1[k] >> 4)) >> 16) + 2) >> 2;
      out[o] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
}
