/**
 * What differs between Node and the browser, set once by the entry point: `index.js` (the
 * browser's, and any bundler's) leaves the defaults below; `node.js` (Node's, chosen by the
 * package's `exports` conditions) fills in file reading and image decoding. No module of the
 * browser entry imports a Node module, so bundlers never see one.
 *
 * @module platform
 */

/**
 * @typedef {object} Platform
 * @property {((path: string | URL) => Promise<Uint8Array>) | null} readFile  reads a local
 *   file (Node), else null: strings are URLs, fetched
 * @property {((bytes: Uint8Array, name: string) => Promise<import('./letterbox.js').Pixels>) | null} decode
 *   decodes an encoded image (Node: sharp), else null: the browser's `createImageBitmap`
 * @property {(backend: string) => Promise<any>} importOrt  the onnxruntime module of a backend
 */

/** @type {Platform} */
export const platform = {
  readFile: null,
  decode: null,
  // A literal specifier, so that bundlers find and bundle onnxruntime-web.
  importOrt: async () => import('onnxruntime-web'),
};

/** Whether this runs in Node (true in the Node entry's default backend choice). */
export const IN_NODE = typeof process !== 'undefined' && Boolean(process.versions?.node);
