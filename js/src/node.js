/**
 * The package's Node entry (the `node` condition of its `exports`): the whole API of
 * `index.js`, with file paths read from disk, encoded images decoded by sharp and the `node`
 * backend (onnxruntime-node) as the default.
 *
 * @module node
 */

import { readFile } from 'node:fs/promises';
import { decodeWithSharp } from './node-decode.js';
import { platform } from './platform.js';

platform.readFile = async (path) => {
  const data = await readFile(path);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
};
platform.decode = decodeWithSharp;
platform.importOrt = async (backend) => (backend === 'node' ? import('onnxruntime-node') : import('onnxruntime-web'));

export * from './index.js';
