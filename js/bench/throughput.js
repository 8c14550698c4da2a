#!/usr/bin/env node
// Images per second (and CPU milliseconds per image) of a model in JavaScript: onnxruntime-node and onnxruntime-web (WASM) in
// this Node process, the model alone (letterboxed batches) and predict() (letterbox, run,
// decode) on the same decoded images. Its Python counterpart, throughput.py, measures the
// Python runtime on the same images and batch; run both on the same machine.
//
//   node bench/throughput.js MODEL.onnx IMAGES_DIR [--batch 32] [--rounds 5] [--threads 2]

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { VisionModel } from '../src/node.js';
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
const pool = await Promise.all(files.map((f) => readImage(join(folder, f))));
const images = Array.from({ length: batch }, (_, i) => pool[i % pool.length]);

for (const backend of ['node', 'wasm']) {
  const model = await VisionModel.load(modelPath, { backend, threads, batchSize: batch });
  const [h, w] = model.inputSize;
  const inputs = new Uint8Array(batch * h * w * 3);
  for (let i = 0; i < batch; i++) inputs.set((await model.prepare(images[i])).input, i * h * w * 3);
  for (let r = 0; r < 3; r++) { // warm-up (WASM takes a few runs to reach its pace)
    await model.run(inputs, batch);
    await model.predict(images);
  }
  // Images per second of wall time, and CPU time per image (all threads of this process:
  // steadier than wall time on a machine other jobs share).
  const time = async (fn) => {
    const start = performance.now();
    const cpu = process.cpuUsage();
    for (let r = 0; r < rounds; r++) await fn();
    const used = process.cpuUsage(cpu);
    const n = rounds * batch;
    return [+(n / ((performance.now() - start) / 1000)).toFixed(1), +((used.user + used.system) / 1000 / n).toFixed(2)];
  };
  const [alone, aloneCpu] = await time(() => model.run(inputs, batch));
  const [predict, predictCpu] = await time(() => model.predict(images));
  console.log(JSON.stringify({ runtime: `js-${backend}`, batch, threads, model_alone_img_s: alone,
    predict_img_s: predict, model_alone_cpu_ms_per_img: aloneCpu, predict_cpu_ms_per_img: predictCpu }));
  await model.dispose();
}
