// The packed package as users install it (scripts/test-js.sh packs it, installs the tarball
// into the projects of test/consumers/ and builds them): Node ESM and CommonJS give the
// Python results; the pages built by Vite and esbuild and the plain import-map page give them
// in Chromium for every kind of input a page has, the ICC photo too; the demo page runs from
// the installed package and shows a model that fails to load.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { decodeRle } from '../src/node.js';
import { JS_ROOT, noChromium, withBrowser } from './chromium.js';
import { comparer, ICC } from './compare.js';
import { FIXTURES, readJson } from './helpers.js';

const CONSUMERS = process.env.VT_JS_CONSUMERS;
const built = CONSUMERS && existsSync(join(CONSUMERS, 'node', 'node_modules', 'vision-tasks'));
const skip = !built && 'the consumer projects are not installed (bash scripts/test-js.sh does it)';
const IMAGE = 'landscape.png';
const run = promisify(execFile);

test('Node: ES modules and CommonJS from the installed tarball give the Python results', { skip, timeout: 300_000 }, async (t) => {
  for (const script of ['esm.mjs', 'cjs.cjs']) {
    const { stdout } = await run(process.execPath, [script, FIXTURES], { cwd: join(CONSUMERS, 'node'), timeout: 240_000 });
    t.diagnostic(stdout.trim().split('\n').join(' · '));
  }
});

/** The URL path of a file under js/ (the browser tests serve js/). */
const served = (path) => relative(JS_ROOT, path).split(sep).join('/');
const pageSkip = skip || noChromium || (relative(JS_ROOT, FIXTURES).startsWith('..') && 'the fixtures are outside js/');

test('pages built by Vite and esbuild, and an import-map page, give the Python results for every input kind', {
  skip: pageSkip, timeout: 300_000 }, async (t) => {
  const expected = readJson('expected', 'detect.json');
  const want = expected.results['0.0'][expected.images.indexOf(IMAGE)];
  const icc = readJson('expected', 'icc.json');
  const { compare } = comparer(decodeRle);
  const near = comparer(decodeRle, ICC).compare;
  const query = `?model=/${served(join(FIXTURES, 'detect.onnx'))}&image=/${served(join(FIXTURES, 'images', IMAGE))}` +
    `&icc=/${served(join(FIXTURES, 'images', icc.image))}&threshold=0`;
  await withBrowser([], async (page, errors, url) => {
    for (const consumer of ['vite/dist/index.html', 'esbuild/dist/index.html', 'importmap/index.html']) {
      await page.goto(`${url}${served(join(CONSUMERS, consumer))}${query}`);
      await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 120_000 });
      const got = await page.evaluate(() => window.__vt);
      assert.equal(got.error, undefined, `${consumer}: ${got.error}`);
      assert.equal(got.backend, 'wasm');
      const kinds = Object.keys(got.results);
      assert.equal(kinds.length, 13, `${consumer}: input kinds`);
      for (const kind of kinds) compare({ ...got.results[kind], source: '' }, { ...want, source: '' }, `${consumer}, ${kind}`);
      const byUrl = near({ ...got.icc.url, source: '' }, { ...icc.results.detect['0.0'], source: '' }, `${consumer}, the ICC photo by URL`);
      const byImg = near({ ...got.icc.img, source: '' }, { ...icc.results.detect['0.0'], source: '' }, `${consumer}, the ICC photo as an <img>`);
      assert.equal(got.drawn, want.detections.length, `${consumer}: detections drawn`);
      assert.ok(got.videoAsFrame, `${consumer}: a <video> gives the results of its frame on a canvas`);
      t.diagnostic(`${consumer}: ${kinds.length} input kinds as in Python, <video> as its frame; the ICC photo (URL, <img>): boxes within ` +
        `${Math.max(byUrl.box, byImg.box).toFixed(3)} px, scores within ${Math.max(byUrl.score, byImg.score).toExponential(1)}`);
    }
    assert.deepEqual(errors, []);
  });
});

test('the demo page runs from the installed package, and shows a model that fails to load', {
  skip: pageSkip, timeout: 240_000 }, async (t) => {
  const expected = readJson('expected', 'segment.json');
  const index = expected.images.indexOf(IMAGE);
  const demo = `${served(join(CONSUMERS, 'importmap', 'node_modules', 'vision-tasks', 'demo'))}/`;
  const image = `/${served(join(FIXTURES, 'images', IMAGE))}`;
  const status = (page) => page.evaluate(() => [document.body.dataset.state, document.getElementById('status').textContent,
    Number(document.getElementById('canvas').dataset.drawn)]);
  await withBrowser([], async (page, errors, url) => {
    await page.goto(`${url}${demo}?model=/${served(join(FIXTURES, 'segment.onnx'))}&image=${image}&threshold=0`);
    await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120_000 });
    const [, text, drawn] = await status(page);
    t.diagnostic(text);
    assert.equal(drawn, expected.results['0.0'][index].detections.length, 'detections drawn at threshold 0');
    await page.goto(`${url}${demo}?model=/no/such/model.onnx&image=${image}`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60_000 });
    const [state, message] = await status(page);
    assert.equal(state, 'error');
    assert.match(message, /^\/no\/such\/model\.onnx: cannot fetch it \(HTTP 404\)/);
    assert.deepEqual(errors.filter((e) => !/404|model\.onnx/.test(e)), []);
  });
});
