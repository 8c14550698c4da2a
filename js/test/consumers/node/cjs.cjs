// Node, CommonJS: require('vision-tasks') (the package's CommonJS build) loads a model and
// predicts a file as Python does. Usage: node cjs.cjs FIXTURES_DIR
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const { VisionModel, decodeRle, CONTRACT_VERSION } = require('vision-tasks');

async function main() {
  const fixtures = process.argv[2];
  const { comparer } = await import('../../compare.js');
  const expected = JSON.parse(readFileSync(join(fixtures, 'expected', 'segment.json'), 'utf8'));
  const model = await VisionModel.load(join(fixtures, 'segment.onnx'), { threads: 1 });
  const prediction = await model.predict(readFileSync(join(fixtures, 'images', expected.images[0])));
  comparer(decodeRle).compare({ ...prediction.toDict(), source: expected.results['0.25'][0].source },
    expected.results['0.25'][0], `cjs: ${expected.images[0]}`);
  await model.dispose();
  console.log(`cjs: segment as in Python (contract ${CONTRACT_VERSION}, ${model.backend})`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
