/**
 * What `VisionModel.predict` accepts as an image, turned into {@link Pixels}:
 *
 * - anywhere: pixels in memory, `{data, width, height}` (RGB, RGBA or gray bytes:
 *   `channels` is `data.length / (width * height)` unless given); an `ImageData` is one;
 * - in a browser (or any host with `OffscreenCanvas` / `document`): an `HTMLImageElement`
 *   (awaited while it loads), `HTMLCanvasElement`, `OffscreenCanvas`, `ImageBitmap`, `HTMLVideoElement`,
 *   `VideoFrame`, `SVGImageElement`, or a `Blob` / `File` of an encoded image (decoded with
 *   `createImageBitmap`, turned upright by its EXIF orientation as the Python runtime does).
 *
 * Drawables are drawn onto a canvas at their natural size and read back as RGBA, so the
 * letterbox resize is the library's own (OpenCV's bytes), never the browser's. Alpha is
 * dropped as in Python (a canvas stores premultiplied colours: fully transparent pixels read
 * back black, where Python keeps the stored colour).
 *
 * @module images
 */

import { checkPixels } from './letterbox.js';

/** @typedef {import('./letterbox.js').Pixels} Pixels */

/**
 * @typedef {{data: Uint8Array | Uint8ClampedArray, width: number, height: number,
 *   channels?: number, source?: string}} PixelInput  Pixels in memory
 * @typedef {PixelInput | CanvasImageSource | Blob | ImageData} ImageInput  What `predict` takes
 */

const isDrawable = (value) => typeof value === 'object' && value !== null && (
  (typeof HTMLImageElement !== 'undefined' && value instanceof HTMLImageElement) ||
  (typeof HTMLCanvasElement !== 'undefined' && value instanceof HTMLCanvasElement) ||
  (typeof HTMLVideoElement !== 'undefined' && value instanceof HTMLVideoElement) ||
  (typeof SVGImageElement !== 'undefined' && value instanceof SVGImageElement) ||
  (typeof OffscreenCanvas !== 'undefined' && value instanceof OffscreenCanvas) ||
  (typeof ImageBitmap !== 'undefined' && value instanceof ImageBitmap) ||
  (typeof VideoFrame !== 'undefined' && value instanceof VideoFrame));

function naturalSize(image) {
  if ('naturalWidth' in image) return [image.naturalWidth, image.naturalHeight];
  if ('videoWidth' in image) return [image.videoWidth, image.videoHeight];
  if ('displayWidth' in image) return [image.displayWidth, image.displayHeight];
  if ('width' in image && typeof image.width === 'number') return [image.width, image.height];
  return [image.width.baseVal.value, image.height.baseVal.value]; // SVGImageElement
}

function sourceName(image) {
  if (typeof image.source === 'string') return image.source;
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement) return image.currentSrc || image.src || '<img>';
  if (typeof File !== 'undefined' && image instanceof File) return image.name;
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) return '<ImageData>';
  if (typeof Blob !== 'undefined' && image instanceof Blob) return '<Blob>';
  if (isDrawable(image)) return `<${image.constructor.name}>`;
  return '<pixels>';
}

function canvas(width, height) {
  if (typeof OffscreenCanvas !== 'undefined') return new OffscreenCanvas(width, height);
  if (typeof document !== 'undefined') {
    const c = document.createElement('canvas');
    c.width = width;
    c.height = height;
    return c;
  }
  throw new TypeError('drawing an image needs a canvas (a browser, or OffscreenCanvas); in Node pass ' +
    'pixels {data, width, height} (decode files with e.g. pngjs or jpeg-js)');
}

/** RGBA pixels of a drawable at its natural size. */
function drawnPixels(image) {
  const [width, height] = naturalSize(image);
  if (!width || !height) throw new TypeError(`${sourceName(image)} has no pixels (${width}x${height}); is it loaded?`);
  const c = canvas(width, height);
  const ctx = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' }));
  ctx.drawImage(image, 0, 0);
  const data = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data;
  return { data, width, height, channels: 4 };
}

/**
 * The pixels of `image`, and a name for it (`Prediction.source`).
 * @param {ImageInput} image
 * @returns {Promise<{pixels: Pixels, source: string}>}
 */
export async function toPixels(image) {
  if (image === null || typeof image !== 'object') {
    throw new TypeError(`predict takes images (pixels {data, width, height}, ImageData, an image element, ` +
      `canvas, ImageBitmap or Blob), got ${image === null ? 'null' : typeof image}`);
  }
  const source = sourceName(image);
  if (typeof Blob !== 'undefined' && image instanceof Blob) {
    const bitmap = await createImageBitmap(image, { imageOrientation: 'from-image',
      premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
    try {
      return { pixels: drawnPixels(bitmap), source };
    } finally {
      bitmap.close();
    }
  }
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !(image.complete && image.naturalWidth)) {
    try {
      await image.decode(); // still loading: wait for it
    } catch {
      throw new TypeError(`${source}: the image cannot be loaded or decoded`);
    }
  }
  if (isDrawable(image)) return { pixels: drawnPixels(image), source };
  const { data, width, height } = /** @type {PixelInput} */ (image);
  const channels = /** @type {PixelInput} */ (image).channels ??
    (data && width > 0 && height > 0 ? data.length / (width * height) : NaN);
  const pixels = { data, width, height, channels };
  checkPixels(pixels);
  return { pixels, source };
}
