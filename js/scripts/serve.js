#!/usr/bin/env node
/**
 * A tiny static file server for the demo page (any static server does; this one needs
 * nothing installed): serves a folder on 127.0.0.1 and prints its URL.
 *
 *   node scripts/serve.js [--port 8000] [--isolate] [--exit-after SECONDS] [folder]   # default js/
 *
 * `--isolate` sends the cross-origin isolation headers (COOP / COEP) that let onnxruntime-web
 * run WASM on several threads; without them it runs on one.
 */

import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.onnx': 'application/octet-stream',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.svg': 'image/svg+xml',
  '.map': 'application/json', '.ico': 'image/x-icon',
};

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
      let info = await stat(file);
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
  const folder = args.filter((a) => !a.startsWith('--'))[0] ?? fileURLToPath(new URL('..', import.meta.url));
  const { url } = await serve(folder, { port, isolate });
  console.log(`serving ${resolve(folder)} at ${url} (demo: ${url}demo/)`);
  if (lifetime > 0) setTimeout(() => process.exit(0), lifetime * 1000).unref?.();
}
