// Decodes PNG and JPEG files into pixels with pure-JavaScript decoders (pngjs, jpeg-js).

import { readFileSync } from 'node:fs';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';

/** A PNG or JPEG file as RGBA pixels (no EXIF orientation: pass upright files). */
export function readImage(path) {
  const bytes = readFileSync(path);
  const img = /\.png$/i.test(path) ? PNG.sync.read(bytes) : jpeg.decode(bytes, { useTArray: true });
  return { data: new Uint8Array(img.data.buffer, img.data.byteOffset, img.data.length), width: img.width, height: img.height, channels: 4, source: path };
}
