#!/usr/bin/env node
/**
 * Builds what the package ships besides src/ (run by `npm pack` / `npm publish` as prepack):
 * - types/: TypeScript declarations generated from the JSDoc of src/ (tsc, tsconfig.json);
 * - dist/index.cjs: the Node entry (src/node.js) as one CommonJS file for `require`
 *   (esbuild; onnxruntime and sharp stay external: the user's app provides them).
 *
 *   node scripts/build.js
 */

import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
rmSync(`${root}types`, { recursive: true, force: true });
rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', `${root}tsconfig.json`], { stdio: 'inherit', cwd: root });
const { build } = await import('esbuild');
await build({
  entryPoints: [`${root}src/node.js`], outfile: `${root}dist/index.cjs`, bundle: true, platform: 'node',
  format: 'cjs', target: 'node20', external: ['onnxruntime-node', 'onnxruntime-web', 'sharp'], logLevel: 'warning',
  banner: { js: '// vision-tasks, CommonJS build of src/node.js (scripts/build.js)' },
});
console.log('built types/ and dist/index.cjs');
