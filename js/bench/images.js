// Decodes image files into pixels once, before timing (the package's Node decoder: sharp,
// EXIF orientation and ICC profiles applied as in Python).

import { readFile } from 'node:fs/promises';
import { decodeImage } from '../src/node.js';

/** An image file as pixels (RGB or RGBA), named by its path. */
export async function readImage(path) {
  return { ...await decodeImage(new Uint8Array(await readFile(path)), path), source: path };
}
