/**
 * Image decoding in Node with sharp (libvips: libjpeg-turbo's decoder, as Pillow's and
 * OpenCV's; libpng, libwebp, giflib...): upright by the EXIF orientation, converted to sRGB
 * from an embedded ICC profile (littleCMS 2, as the Python runtime), RGB or RGBA bytes.
 * sharp is an optional peer dependency: imported on the first decode.
 *
 * @module node-decode
 */

import { ImageError } from './images.js';
import { firstLine } from './sources.js';

let sharpModule = null;

async function loadSharp(name) {
  if (!sharpModule) {
    try {
      sharpModule = (await import('sharp')).default;
    } catch (err) {
      throw new ImageError(`${name}: decoding an image file in Node needs sharp (npm install sharp: ` +
        `${firstLine(err)}), or pass pixels {data, width, height}`);
    }
  }
  return sharpModule;
}

/**
 * @param {Uint8Array} bytes  an encoded image
 * @param {string} name  names it in errors
 * @returns {Promise<import('./letterbox.js').Pixels>}  RGB or RGBA, sRGB, upright
 */
export async function decodeWithSharp(bytes, name) {
  const sharp = await loadSharp(name);
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error' }).rotate().toColourspace('srgb')
      .raw().toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width, height: info.height, channels: info.channels };
  } catch (err) {
    throw new ImageError(`${name}: cannot decode the image (${firstLine(err)}); check that it is an image file`);
  }
}
