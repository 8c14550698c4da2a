// Shared by the tests: where the fixtures are (js/test/make_fixtures.py writes them) and how
// to read a PNG into pixels.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';

/** The fixtures folder: $VT_JS_FIXTURES, else js/.fixtures (what scripts/test-js.sh makes). */
export const FIXTURES = process.env.VT_JS_FIXTURES ?? fileURLToPath(new URL('../.fixtures', import.meta.url));

if (!existsSync(join(FIXTURES, 'expected'))) {
  throw new Error(`no test fixtures in ${FIXTURES}: run \`bash scripts/test-js.sh\` from the repository root ` +
    '(or `.venv/bin/python js/test/make_fixtures.py js/.fixtures`)');
}

export const fixture = (...parts) => join(FIXTURES, ...parts);
export const readJson = (...parts) => JSON.parse(readFileSync(fixture(...parts), 'utf8'));

/** A PNG file as RGBA pixels (pngjs: gray and RGB come back as RGBA, colours as stored). */
export function readPng(path) {
  const png = PNG.sync.read(readFileSync(path));
  return { data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.length), width: png.width, height: png.height, channels: 4 };
}
