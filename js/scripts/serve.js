#!/usr/bin/env node
/**
 * A tiny static file server for the demo page (nothing to install): serves a folder on
 * 127.0.0.1 and prints its URL and the demo's.
 *
 *   node scripts/serve.js [--port 8000] [--isolate] [--exit-after SECONDS] [folder]
 *   npx vision-tasks-demo                  # the same, from a project that installed the package
 *
 * The default folder is the checkout's js/, or for an installed package the project that
 * installed it (the folder holding its node_modules/). A missing file under
 * `.../node_modules/<package>/` is looked up in the node_modules folders above it, as Node
 * resolves packages, so the demo's import map finds the project's onnxruntime-web wherever
 * npm put it (never outside the served folder).
 *
 * `--isolate` sends the cross-origin isolation headers (COOP / COEP) that let onnxruntime-web
 * run WASM on several threads; without them it runs on one.
 */

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.onnx': 'application/octet-stream',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.svg': 'image/svg+xml',
  '.map': 'application/json', '.ico': 'image/x-icon',
};

/** `<dir>/node_modules/<rest>` missing: the first `<ancestor>/node_modules/<rest>` inside `root`. */
async function fromNodeModulesAbove(file, root) {
  const at = file.lastIndexOf(`${sep}node_modules${sep}`);
  const rest = file.slice(at + `${sep}node_modules${sep}`.length);
  for (let dir = dirname(file.slice(0, at)); dir === root || dir.startsWith(root + sep); dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', rest);
    if (await stat(candidate).then(() => true, () => false)) return candidate;
    if (dir === root) break;
  }
  return file;
}

/** The folder to serve by default: the project above node_modules/ when installed, else js/. */
function defaultFolder() {
  const pkg = fileURLToPath(new URL('..', import.meta.url)).replace(/[\\/]$/, '');
  const at = pkg.lastIndexOf(`${sep}node_modules${sep}`);
  return at >= 0 ? pkg.slice(0, at) : pkg;
}

/**
 * Serves `folder` on 127.0.0.1:`port` (0: any free port).
 * @param {string} folder
 * @param {{port?: number, isolate?: boolean}} [options]
 * @returns {Promise<{server: import('node:http').Server, url: string}>}
 */
export function serve(folder, { port = 8000, isolate = false } = {}) {
  const root = resolve(folder);
  const server = createServer(async (req, res) => {
    const headers = isolate ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {};
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://localhost').pathname);
      let file = normalize(join(root, path));
      if (file !== root && !file.startsWith(root + sep)) throw Object.assign(new Error('outside'), { status: 403 });
      let info = await stat(file).catch((err) => (file.includes(`${sep}node_modules${sep}`) ? null : Promise.reject(err)));
      if (!info) {
        file = await fromNodeModulesAbove(file, root);
        info = await stat(file);
      }
      if (info.isDirectory()) {
        if (!path.endsWith('/')) {
          res.writeHead(301, { ...headers, Location: `${path}/` });
          res.end();
          return;
        }
        file = join(file, 'index.html');
        info = await stat(file);
      }
      res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
        'Content-Length': info.size, 'Cache-Control': 'no-cache' });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    } catch (err) {
      const status = err.status ?? (err.code === 'ENOENT' || err.code === 'ENOTDIR' ? 404 : 500);
      res.writeHead(status, { ...headers, 'Content-Type': 'text/plain' });
      res.end(`${status}\n`);
    }
  });
  return new Promise((done, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => done({ server, url: `http://127.0.0.1:${server.address().port}/` }));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--port');
  const port = at >= 0 ? Number(args.splice(at, 2)[1]) : 8000;
  const exitAt = args.indexOf('--exit-after');
  const lifetime = exitAt >= 0 ? Number(args.splice(exitAt, 2)[1]) : 0;
  const isolate = args.includes('--isolate');
  const folder = resolve(args.filter((a) => !a.startsWith('--'))[0] ?? defaultFolder());
  const { url } = await serve(folder, { port, isolate });
  const demo = relative(folder, fileURLToPath(new URL('../demo/', import.meta.url))).split(sep).join('/');
  console.log(`serving ${folder} at ${url} (demo: ${url}${demo.startsWith('..') ? 'demo' : demo}/)`);
  if (lifetime > 0) setTimeout(() => process.exit(0), lifetime * 1000).unref?.();
}
