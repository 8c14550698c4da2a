// Bundles main.js (vision-tasks and onnxruntime-web) for the browser into dist/, with the
// page and the onnxruntime-web WASM file it names beside the bundle, where onnxruntime-web looks for
// them (new URL(file, import.meta.url)).
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist');
await build({ entryPoints: ['main.js'], bundle: true, format: 'esm', platform: 'browser', outfile: 'dist/main.js', logLevel: 'warning' });
const ortDist = 'node_modules/onnxruntime-web/dist';
const bundle = readFileSync('dist/main.js', 'utf8');
for (const file of readdirSync(ortDist).filter((f) => f.endsWith('.wasm') && bundle.includes(f))) {
  copyFileSync(join(ortDist, file), join('dist', file)); // the one the bundle names
}
copyFileSync('index.html', 'dist/index.html');
