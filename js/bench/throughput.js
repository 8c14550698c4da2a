#!/usr/bin/env node
// Images per second of a model in JavaScript: onnxruntime-node and onnxruntime-web (WASM) in
// this Node process, the model alone (letterboxed batches) and predict() (letterbox, run,
// decode) on the same decoded images. Its Python counterpart, throughput.py, measures the
// Python runtime on the same images and batch; run both on the same machine.
//
//   node bench/throughput.js MODEL.onnx IMAGES_DIR [--batch 32] [--rounds 5] [--threads 2]

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { VisionModel } from '../src/index.js';
import { readImage } from './images.js';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args.splice(at, 2)[1]) : fallback;
};
const batch = option('--batch', 32);
const rounds = option('--rounds', 5);
const threads = option('--threads', 2);
const [modelPath, folder] = args;
const files = readdirSync(folder).filter((f) => /\.(png|jpe?g)$/i.test(f)).sort();
const pool = files.map((f) => readImage(join(folder, f)));
const images = Array.from({ length: batch }, (_, i) => pool[i % pool.length]);

for (const backend of ['node', 'wasm']) {
  const model = await VisionModel.load(modelPath, { backend, threads, batchSize: batch });
  const [h, w] = model.inputSize;
  const inputs = new Uint8Array(batch * h * w * 3);
  for (let i = 0; i < batch; i++) inputs.set((await model.prepare(images[i])).input, i * h * w * 3);
  await model.run(inputs, batch); // warm-up
  await model.predict(images);
  const time = async (fn) => {
    const start = performance.now();
    for (let r = 0; r < rounds; r++) await fn();
    return (rounds * batch) / ((performance.now() - start) / 1000);
  };
  const alone = await time(() => model.run(inputs, batch));
  const predict = await time(() => model.predict(images));
  console.log(JSON.stringify({ runtime: `js-${backend}`, batch, threads, model_alone_img_s: +alone.toFixed(1), predict_img_s: +predict.toFixed(1) }));
  await model.dispose();
}
