// RemoteModel: a model behind `vision-tasks serve` used like a VisionModel. A stub fetch
// checks the requests it sends and the errors it raises; then the Python server, started on
// the fixture models (a free port of 127.0.0.1, killed by pid), must give the same
// Prediction.toDict() as the Python runtime did for every task, masks and heads included.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RemoteError, RemoteModel } from '../src/node.js';
import { fixture, readJson } from './helpers.js';

const TASKS = ['classify', 'localize', 'detect', 'segment', 'multi'];
const CLI = fileURLToPath(new URL('../../.venv/bin/vision-tasks', import.meta.url));
const START_TIMEOUT_MS = 90000;
const withoutSource = ({ source, ...rest }) => rest;

const INFO = { name: 'detect', task: 'detect', classes: ['a', 'b'], input_size: [64, 64], heads: {} };

/** A fetch that answers from `routes` (path -> [status, body]) and records each call. */
function stubFetch(routes) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: String(url), ...init });
    const path = new URL(url).pathname;
    const [status, body] = routes[path] ?? [404, { error: `no route ${path}` }];
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status });
  };
  return { fetch, calls };
}

test('connect reads the model and predict sends the bytes, the token and the options', async () => {
  const line = { source: '<bytes>', task: 'detect', width: 10, height: 8,
    detections: [{ box: [1, 2, 3, 4], label: 1, name: 'b', score: 0.5 }] };
  const { fetch, calls } = stubFetch({ '/v1/models': [200, { models: [INFO] }],
    '/v1/models/detect/predict': [200, line] });
  const model = await RemoteModel.connect('http://127.0.0.1:9/', { token: 't0k', fetch, scoreThreshold: 0.4 });
  assert.equal(model.task, 'detect');
  assert.deepEqual(model.inputSize, [64, 64]);
  const result = await model.predict(new Uint8Array([1, 2, 3]));
  assert.deepEqual(withoutSource(result.toDict()), withoutSource(line));
  const sent = calls[1];
  assert.equal(sent.method, 'POST');
  assert.match(sent.url, /\/v1\/models\/detect\/predict\?top_k=2&score_threshold=0\.4$/);
  assert.equal(sent.headers.Authorization, 'Bearer t0k');
  assert.deepEqual([...sent.body], [1, 2, 3]);
  const two = await model.predict([new Uint8Array([1]), new Uint8Array([2])]);
  assert.equal(two.length, 2);
});

test('server errors become RemoteErrors with the status and the server\'s message', async () => {
  const { fetch } = stubFetch({ '/v1/models': [200, { models: [INFO, { ...INFO, name: 'other' }] }],
    '/v1/models/detect/predict': [415, { error: '<bytes>: not an image' }] });
  await assert.rejects(RemoteModel.connect('http://127.0.0.1:9', { fetch }),
    (err) => err instanceof RemoteError && /several models/.test(err.message));
  await assert.rejects(RemoteModel.connect('http://127.0.0.1:9', { fetch, model: 'nope' }),
    (err) => err instanceof RemoteError && err.status === 404 && /detect, other/.test(err.message));
  const model = await RemoteModel.connect('http://127.0.0.1:9', { fetch, model: 'detect' });
  await assert.rejects(model.predict(new Uint8Array([0])),
    (err) => err instanceof RemoteError && err.status === 415 && /not an image/.test(err.message));
  await assert.rejects(model.predict({ data: new Uint8Array(3), width: 1, height: 1 }), TypeError);
  const down = async () => { throw new Error('connect ECONNREFUSED'); };
  await assert.rejects(RemoteModel.connect('http://127.0.0.1:9', { fetch: down }),
    (err) => err instanceof RemoteError && err.status === 0 && /ECONNREFUSED/.test(err.message));
});

let server = null;
let base = '';
before(async () => {
  if (!existsSync(CLI) || !existsSync(fixture('multi.onnx'))) return;
  const models = TASKS.map((task) => `${task}=${fixture(`${task}.onnx`)}`);
  server = spawn(CLI, ['serve', ...models, '--port', '0', '--threads', '1', '--lanes', '1'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  base = await new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${text}`)), START_TIMEOUT_MS);
    server.stderr.on('data', (chunk) => {
      text += chunk;
      const found = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
    server.on('exit', (code) => reject(new Error(`the server exited (${code}): ${text}`)));
  });
});

after(() => {
  if (server && server.exitCode === null) server.kill('SIGKILL');
});

test('the Python server gives the Python runtime\'s results for every task', async (t) => {
  if (!server) {
    t.skip('no .venv/bin/vision-tasks or fixture models');
    return;
  }
  for (const task of TASKS) {
    const expected = readJson('expected', `${task}.json`);
    const model = await RemoteModel.connect(base, { model: task });
    assert.equal(model.task, task);
    const images = expected.images.map((name) => fixture('images', name));
    const results = await model.predict(images);
    results.forEach((result, i) => {
      assert.equal(result.source, images[i]);
      assert.deepEqual(withoutSource(result.toDict()), withoutSource(expected.results['0.25'][i]), `${task} ${expected.images[i]}`);
    });
    if (task === 'detect') {
      const all = await model.predict(readFileSync(images[0]), { scoreThreshold: 0 });
      assert.deepEqual(withoutSource(all.toDict()), withoutSource(expected.results['0.0'][0]));
    }
  }
});
