// Shared by the browser tests: Debian's chromium driven by playwright-core, and the static
// server (scripts/serve.js) in a child process that exits by itself.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CHROMIUM = process.env.VT_CHROMIUM ?? '/usr/bin/chromium';
export const JS_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SERVER_LIFETIME_S = 240; // the server exits by itself after this, whatever happens here
// Without these, chromium tries the network (updates, sync, ...) and stalls on a closed one.
export const FLAGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/** Why the browser tests cannot run here, or false. */
export const noChromium = !existsSync(CHROMIUM) && `no chromium at ${CHROMIUM} (apt-get install chromium)`;

/** Starts scripts/serve.js on a free port, serving `root`; resolves to {url, child}. */
export function startServer(root = JS_ROOT) {
  const child = spawn(process.execPath, [join(JS_ROOT, 'scripts', 'serve.js'), '--port', '0',
    '--exit-after', String(SERVER_LIFETIME_S), root], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the static server did not start in 10 s')), 10_000);
    child.once('error', reject);
    child.stdout.on('data', (chunk) => {
      const url = /at (http:\/\/\S+\/)/.exec(String(chunk))?.[1];
      if (url) {
        clearTimeout(timer);
        resolve({ url, child });
      }
    });
  });
}

/**
 * Runs `body(page, errors, url)` in a fresh headless chromium, `url` being the server's (of
 * js/); `errors` collects page errors and console errors.
 */
export async function withBrowser(extraFlags, body) {
  const { chromium } = await import('playwright-core');
  const { url, child } = await startServer();
  const profile = mkdtempSync(join(tmpdir(), 'vt-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: [...FLAGS, ...extraFlags],
      viewport: { width: 1180, height: 840 }, timeout: 60_000,
    });
    const page = context.pages()[0] ?? await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => { if (msg.type() === 'error' && !/\[W:onnxruntime/.test(msg.text())) errors.push(msg.text()); });
    await body(page, errors, url);
  } finally {
    await context?.close();
    child.kill();
    rmSync(profile, { recursive: true, force: true });
  }
}
