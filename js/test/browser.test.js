// The demo page in a real browser (Debian's chromium, driven by playwright-core): it loads
// the segment model and a test image through its file inputs, runs them with onnxruntime-web
// (WASM), and draws as many detections as the Python runtime finds. Saves a screenshot.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fixture, readJson } from './helpers.js';

const CHROMIUM = process.env.VT_CHROMIUM ?? '/usr/bin/chromium';
const JS_ROOT = fileURLToPath(new URL('..', import.meta.url));
const SCREENSHOT = process.env.VT_JS_SCREENSHOT ?? join(JS_ROOT, 'test', 'output', 'demo-segment.png');
const MODEL = process.env.VT_JS_DEMO_MODEL ?? fixture('segment.onnx');
const SERVER_LIFETIME_S = 120; // the server exits by itself after this, whatever happens here
// Without these, chromium tries the network (updates, sync, ...) and stalls on a closed one.
const FLAGS = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/** Starts scripts/serve.js on a free port; resolves to {url, child}. */
function startServer() {
  const child = spawn(process.execPath, [join(JS_ROOT, 'scripts', 'serve.js'), '--port', '0',
    '--exit-after', String(SERVER_LIFETIME_S), JS_ROOT], { stdio: ['ignore', 'pipe', 'inherit'] });
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

test('the demo page draws the Python runtime\'s detections of the segment model', { timeout: 180_000,
  skip: !existsSync(CHROMIUM) && `no chromium at ${CHROMIUM} (apt-get install chromium)` }, async (t) => {
  const { chromium } = await import('playwright-core');
  const expected = readJson('expected', 'segment.json');
  // The image with the most detections at the default threshold (portrait or landscape, RGB).
  const counts = expected.images.map((name, i) => [name, expected.results['0.25'][i].detections.length,
    expected.results['0.0'][i].detections.length]).filter(([name]) => !/rgba|gray/.test(name));
  const [image, atDefault, atZero] = counts.sort((a, b) => b[1] - a[1])[0];
  assert.ok(atDefault > 0, 'the fixtures have an image with detections at the default threshold');

  const { url, child } = await startServer();
  const profile = mkdtempSync(join(tmpdir(), 'vt-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: FLAGS, viewport: { width: 1180, height: 760 }, timeout: 60_000,
    });
    const page = context.pages()[0] ?? await context.newPage();
    const errors = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
    await page.goto(`${url}demo/`);
    await page.setInputFiles('#image', fixture('images', image));
    await page.setInputFiles('#model', MODEL);
    await page.waitForSelector('body[data-state="done"]', { timeout: 90_000 });
    const drawn = async () => page.evaluate(() => ({
      drawn: Number(document.getElementById('canvas').dataset.drawn),
      listed: document.querySelectorAll('#results li.detection').length,
      status: document.getElementById('status').textContent,
    }));
    const shown = await drawn();
    t.diagnostic(`${image}: ${shown.status}`);
    assert.deepEqual(errors, []);
    if (MODEL === fixture('segment.onnx')) {
      assert.equal(shown.drawn, atDefault, 'detections drawn at the default threshold 0.25');
      assert.equal(shown.listed, atDefault, 'detections listed');
    }
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);
    if (MODEL === fixture('segment.onnx')) {
      await page.fill('#threshold', '0');
      const all = await drawn();
      assert.equal(all.drawn, atZero, 'detections drawn at threshold 0');
    }
  } finally {
    await context?.close();
    child.kill();
    rmSync(profile, { recursive: true, force: true });
  }
});
