// The demo page in a real browser (Debian's chromium, driven by playwright-core): it loads
// the segment model and a test image through its file inputs, runs them with onnxruntime-web
// (WASM), and draws as many detections as the Python runtime finds. Saves a screenshot.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { JS_ROOT, noChromium, withBrowser } from './chromium.js';
import { fixture, readJson } from './helpers.js';

const SCREENSHOT = process.env.VT_JS_SCREENSHOT ?? join(JS_ROOT, 'test', 'output', 'demo-segment.png');
const MODEL = process.env.VT_JS_DEMO_MODEL ?? fixture('segment.onnx');

/** Runs `body(page, errors)` on the demo page of the checkout. */
function withDemoPage(extraFlags, body) {
  return withBrowser(extraFlags, async (page, errors, url) => {
    await page.goto(`${url}demo/`);
    await body(page, errors);
  });
}

/** Loads `image` and `model` through the page's file inputs; resolves once drawn. */
async function runDemo(page, image, model, backend = 'wasm') {
  await page.selectOption('#backend', backend);
  await page.setInputFiles('#image', image);
  await page.setInputFiles('#model', model);
  // Done when the page is idle and shows this model on this image (not an earlier run).
  await page.waitForFunction(([m, i]) => document.body.dataset.state !== 'busy' &&
    document.getElementById('status').textContent.startsWith(`${m}: `) &&
    document.getElementById('status').textContent.includes(` · ${i} `), [basename(model), basename(image)], { timeout: 90_000 });
  const state = await page.evaluate(() => document.body.dataset.state);
  assert.equal(state, 'done', await page.evaluate(() => document.getElementById('status').textContent));
  return page.evaluate(() => ({
    drawn: Number(document.getElementById('canvas').dataset.drawn),
    listed: [...document.querySelectorAll('#results li')].map((li) => [li.classList.contains('detection'),
      li.querySelector('.name').textContent, Number(li.querySelector('.score').textContent)]),
    status: document.getElementById('status').textContent,
  }));
}

const skip = noChromium;

test('the demo page draws the Python runtime\'s detections of the segment model', { timeout: 180_000, skip }, async (t) => {
  const expected = readJson('expected', 'segment.json');
  // The default threshold, or a lower one where the tiny model finds nothing above it; the
  // RGB image (portrait or landscape) with the most detections there.
  const threshold = ['0.25', '0.05', '0.0'].find((t) => expected.results[t].some((r) => r.detections.length > 0));
  const counts = expected.images.map((name, i) => [name, expected.results[threshold][i].detections.length,
    expected.results['0.0'][i].detections.length]).filter(([name]) => !/rgba|gray/.test(name));
  const [image, atThreshold, atZero] = counts.sort((a, b) => b[1] - a[1])[0];
  assert.ok(atThreshold > 0, 'the segment model finds objects in a test image');
  await withDemoPage([], async (page, errors) => {
    if (MODEL === fixture('segment.onnx')) await page.fill('#threshold', threshold);
    const shown = await runDemo(page, fixture('images', image), MODEL);
    t.diagnostic(`${image}: ${shown.status}`);
    assert.deepEqual(errors, []);
    if (MODEL === fixture('segment.onnx')) {
      assert.equal(shown.drawn, atThreshold, `detections drawn at threshold ${threshold}`);
      assert.equal(shown.listed.filter(([isDetection]) => isDetection).length, atThreshold, 'detections listed');
    }
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);
    if (MODEL === fixture('segment.onnx')) {
      await page.fill('#threshold', '0');
      const drawn = await page.evaluate(() => Number(document.getElementById('canvas').dataset.drawn));
      assert.equal(drawn, atZero, 'detections drawn at threshold 0');
    }
  });
});

test('WebGPU runs classify with the Python scores; segment, which it cannot run, falls back to WASM', {
  timeout: 180_000, skip }, async (t) => {
  const expected = readJson('expected', 'classify.json');
  const image = 'landscape.png';
  const want = expected.results['0.25'][expected.images.indexOf(image)];
  // SwiftShader's WebGPU adapter (software Vulkan) where the machine has no GPU.
  await withDemoPage(['--enable-unsafe-webgpu'], async (page, errors) => {
    const classify = await runDemo(page, fixture('images', image), fixture('classify.onnx'), 'webgpu');
    t.diagnostic(classify.status);
    assert.match(classify.status, /classify, 5 classes, input 32×32, webgpu ·/);
    assert.deepEqual(classify.listed.map(([, name]) => name), want.top.map((c) => c.name));
    classify.listed.forEach(([, , score], k) => assert.ok(Math.abs(score - want.top[k].score) <= 1e-3));
    const segment = await runDemo(page, fixture('images', image), fixture('segment.onnx'), 'webgpu');
    t.diagnostic(segment.status);
    assert.match(segment.status, /segment, 5 classes, input 64×64, wasm \(WebGPU cannot run this model/);
    assert.deepEqual(errors.filter((e) => !/WebGPU|JSEP|ExecuteKernel/.test(e)), []);
  });
});
