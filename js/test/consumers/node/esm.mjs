// Node, ES modules: the installed package (import 'vision-tasks' resolves its `node` entry)
// gives the Python runtime's results for every task, on the default backend (onnxruntime-node),
// from file paths decoded by sharp; the ICC photo as Python converts it. Usage:
//   node esm.mjs FIXTURES_DIR      (what js/test/make_fixtures.py wrote)
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeRle, VisionModel } from 'vision-tasks';
import { comparer, ICC } from '../../compare.js';

const fixtures = process.argv[2];
const read = (...parts) => JSON.parse(readFileSync(join(fixtures, ...parts), 'utf8'));
const parity = comparer(decodeRle);
const near = comparer(decodeRle, ICC);
const icc = read('expected', 'icc.json');
for (const task of ['classify', 'localize', 'detect', 'segment', 'multi']) {
  const expected = read('expected', `${task}.json`);
  const model = await VisionModel.load(join(fixtures, `${task}.onnx`), { threads: 1, scoreThreshold: 0 });
  if (model.backend !== 'node') throw new Error(`the default backend in Node is ${model.backend}, not node`);
  const paths = expected.images.map((name) => join(fixtures, 'images', name));
  const predictions = await model.predict(paths);
  const check = task === 'multi' ? parity.compareHeads : parity.compare;
  predictions.forEach((p, i) => check(p.toDict(), expected.results['0.0'][i], `${task}: ${expected.images[i]}`));
  const photo = (await model.predict(join(fixtures, 'images', icc.image))).toDict();
  (task === 'multi' ? near.compareHeads : near.compare)({ ...photo, source: '' }, { ...icc.results[task]['0.0'], source: '' }, `${task}: ${icc.image}`);
  await model.dispose();
  console.log(`esm: ${task} as in Python (${paths.length} images and the ICC photo)`);
}
