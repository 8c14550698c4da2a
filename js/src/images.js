/**
 * What `VisionModel.predict` accepts as an image, turned into {@link Pixels}:
 *
 * - encoded image files ({@link import('./sources.js').ByteSource}): a URL or path string,
 *   a `URL`, a `Buffer` / `Uint8Array` / `ArrayBuffer`, a `Blob` / `File`, a fetch `Response`;
 *   decoded by sharp in Node (an optional peer dependency) and by the browser's
 *   `createImageBitmap` elsewhere, turned upright by their EXIF orientation and converted to
 *   sRGB from an embedded ICC profile, as the Python runtime does (`vision_tasks/icc.py`);
 * - pixels in memory, `{data, width, height}` (RGB, RGBA or gray bytes: `channels` is
 *   `data.length / (width * height)` unless given); an `ImageData` is one; taken as sRGB;
 * - in a browser: an `HTMLImageElement` (awaited while it loads), `HTMLCanvasElement`,
 *   `OffscreenCanvas`, `ImageBitmap`, `HTMLVideoElement` (its current frame), `VideoFrame` or
 *   `SVGImageElement`, drawn onto an sRGB canvas at natural size (the browser applies the
 *   image's colour profile, the same rule);
 * - a `Promise` of any of these.
 *
 * The letterbox resize is the library's own (OpenCV's bytes), never the browser's. Alpha is
 * dropped as in Python (a canvas stores premultiplied colours: fully transparent pixels read
 * back black, where Python keeps the stored colour).
 *
 * @module images
 */

import { checkPixels } from './letterbox.js';
import { platform } from './platform.js';
import { byteSourceName, firstLine, isByteSource, readBytes } from './sources.js';

/** @typedef {import('./letterbox.js').Pixels} Pixels */

/**
 * @typedef {{data: Uint8Array | Uint8ClampedArray, width: number, height: number,
 *   channels?: number, source?: string}} PixelInput  Pixels in memory
 * @typedef {PixelInput | ImageData | CanvasImageSource | VideoFrame | import('./sources.js').ByteSource} ImageSource
 *   One image, as {@link import('./model.js').VisionModel#predict} takes it
 * @typedef {ImageSource | Promise<ImageSource>} ImageInput  An image, or a promise of one
 */

const KINDS = 'a URL or path, encoded bytes (Buffer, Uint8Array, ArrayBuffer), a Blob or File, a ' +
  'Response, pixels {data, width, height}, ImageData, an <img>, <canvas>, <video>, VideoFrame or ImageBitmap';

/** An image that cannot be read or decoded; the message is one line naming it. */
export class ImageError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'ImageError';
  }
}

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
  if (isByteSource(image)) return byteSourceName(image);
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement) return image.currentSrc || image.src || '<img>';
  if (typeof ImageData !== 'undefined' && image instanceof ImageData) return '<ImageData>';
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
  throw new ImageError('drawing an image needs a canvas (a browser, or OffscreenCanvas); in Node pass ' +
    'the file (path, bytes) or pixels {data, width, height}');
}

/** RGBA pixels of a drawable at its natural size. */
function drawnPixels(image, name) {
  const [width, height] = naturalSize(image);
  if (!width || !height) throw new ImageError(`${name} has no pixels (${width}x${height}); is it loaded?`);
  const c = canvas(width, height);
  const ctx = /** @type {CanvasRenderingContext2D} */ (c.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' }));
  ctx.drawImage(image, 0, 0);
  const data = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' }).data;
  return { data, width, height, channels: 4 };
}

/**
 * Decodes an encoded image (PNG, JPEG, WebP, GIF...): upright by its EXIF orientation, in
 * sRGB (an embedded ICC profile applied). Node: sharp; elsewhere: `createImageBitmap`.
 *
 * @param {Uint8Array} bytes  the file's bytes
 * @param {string} [name]  names the image in errors
 * @returns {Promise<Pixels>}
 * @throws {ImageError} not an image, corrupt, or no decoder (Node without sharp)
 */
export async function decodeImage(bytes, name = '<bytes>') {
  if (!bytes.length) throw new ImageError(`${name}: empty data (0 bytes); pass the bytes of an encoded image`);
  if (platform.decode) return platform.decode(bytes, name);
  if (typeof createImageBitmap === 'undefined') {
    throw new ImageError(`${name}: no image decoder here (no createImageBitmap); pass pixels {data, width, height}`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes]), { imageOrientation: 'from-image',
      premultiplyAlpha: 'none', colorSpaceConversion: 'default' });
  } catch (err) {
    throw new ImageError(`${name}: cannot decode the image (${firstLine(err)}); check that it is an image file`);
  }
  try {
    return drawnPixels(bitmap, name);
  } finally {
    bitmap.close();
  }
}

/**
 * The pixels of `image`, and a name for it (`Prediction.source`).
 * @param {ImageInput} image
 * @returns {Promise<{pixels: Pixels, source: string}>}
 * @throws {TypeError} not an image kind; {@link ImageError} unreadable or undecodable
 */
export async function toPixels(image) {
  if (image !== null && typeof /** @type {any} */ (image)?.then === 'function') image = await image;
  if (image === null || (typeof image !== 'object' && typeof image !== 'string')) {
    throw new TypeError(`predict takes images (${KINDS}), got ${image === null ? 'null' : typeof image}`);
  }
  const source = sourceName(image);
  if (isByteSource(image)) {
    const { bytes } = await readBytes(/** @type {any} */ (image), (message) => new ImageError(message));
    return { pixels: await decodeImage(bytes, source), source };
  }
  if (typeof HTMLImageElement !== 'undefined' && image instanceof HTMLImageElement && !(image.complete && image.naturalWidth)) {
    try {
      await image.decode(); // still loading: wait for it
    } catch {
      throw new ImageError(`${source}: the image cannot be loaded or decoded`);
    }
  }
  if (isDrawable(image)) return { pixels: drawnPixels(image, source), source };
  const { data, width, height } = /** @type {PixelInput} */ (image);
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
    throw new TypeError(`predict takes images (${KINDS}), got ${image.constructor?.name ?? typeof image}` +
      (data ? ` whose data is ${data.constructor?.name}, not Uint8Array` : ''));
  }
  const channels = /** @type {PixelInput} */ (image).channels ??
    (width > 0 && height > 0 ? data.length / (width * height) : NaN);
  const pixels = { data, width, height, channels };
  checkPixels(pixels);
  return { pixels, source };
}
