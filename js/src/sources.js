/**
 * Encoded bytes (an ONNX file, an image file) from what a JavaScript program holds: a URL or
 * path string, a `URL`, a Node `Buffer`, `Uint8Array`, `ArrayBuffer` (or another view), a
 * `Blob` / `File`, a fetch `Response`, or a `Promise` of any of these.
 *
 * Strings: in Node, a path or a `file:` URL is read from disk and anything else (`http:`,
 * `https:`, `data:`) is fetched; in a browser every string is a URL, fetched relative to the
 * page.
 *
 * @module sources
 */

import { IN_NODE, platform } from './platform.js';

/**
 * @typedef {string | URL | Uint8Array | ArrayBuffer | ArrayBufferView | Blob | Response} ByteSource
 *   Something that holds or names encoded bytes
 */

/** The first line of an error's message. */
export const firstLine = (err) => String(err?.message ?? err).split('\n')[0];

const isResponse = (value) => typeof Response !== 'undefined' && value instanceof Response;
const isBlob = (value) => typeof Blob !== 'undefined' && value instanceof Blob;

/**
 * Whether `value` is one of the {@link ByteSource} kinds (not awaited: a Promise is not).
 * @param {unknown} value
 */
export function isByteSource(value) {
  return typeof value === 'string' || value instanceof URL || value instanceof ArrayBuffer ||
    ArrayBuffer.isView(value) || isBlob(value) || isResponse(value);
}

/** A name for a byte source in messages and `Prediction.source`. */
export function byteSourceName(value) {
  if (typeof value === 'string') return value.startsWith('data:') ? '<data: URL>' : value;
  if (value instanceof URL) return value.protocol === 'data:' ? '<data: URL>' : value.href;
  if (isBlob(value)) return /** @type {File} */ (value).name || '<Blob>';
  if (isResponse(value)) return value.url || '<Response>';
  return '<bytes>';
}

/**
 * The bytes of `source`, and its name.
 * @param {ByteSource} source
 * @param {(message: string) => Error} fail  makes the error thrown when they cannot be had
 * @returns {Promise<{bytes: Uint8Array, name: string}>}
 */
export async function readBytes(source, fail) {
  const name = byteSourceName(source);
  if (source instanceof Uint8Array) return { bytes: source, name };
  if (source instanceof ArrayBuffer) return { bytes: new Uint8Array(source), name };
  if (ArrayBuffer.isView(source)) {
    return { bytes: new Uint8Array(source.buffer, source.byteOffset, source.byteLength), name };
  }
  if (isBlob(source)) return { bytes: new Uint8Array(await /** @type {Blob} */ (source).arrayBuffer()), name };
  if (isResponse(source)) return { bytes: await responseBytes(/** @type {Response} */ (source), name, fail), name };
  const text = String(source);
  const scheme = source instanceof URL ? source.protocol : /^([a-z][a-z0-9+.-]+:)/i.exec(text)?.[1];
  const local = IN_NODE && (!scheme || scheme === 'file:' || /^[a-z]:$/i.test(scheme)); // C:\ on Windows
  if (local) {
    if (!platform.readFile) throw fail(`${name}: reading a file needs the package's Node entry (import 'vision-tasks' in Node)`);
    try {
      return { bytes: await platform.readFile(scheme === 'file:' ? new URL(text) : text), name };
    } catch (err) {
      throw fail(`${name}: cannot read the file (${err.code ?? firstLine(err)}); check the path`);
    }
  }
  let response;
  try {
    response = await fetch(source);
  } catch (err) {
    throw fail(`${name}: cannot fetch it (${firstLine(err)})`);
  }
  return { bytes: await responseBytes(response, name, fail), name };
}

async function responseBytes(response, name, fail) {
  if (!response.ok) throw fail(`${name}: cannot fetch it (HTTP ${response.status})`);
  if (response.bodyUsed) throw fail(`${name}: the Response's body was already read; pass a fresh Response`);
  return new Uint8Array(await response.arrayBuffer());
}
