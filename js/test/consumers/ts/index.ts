// Type-checked (tsc --strict, the package's .d.ts not skipped) against the installed
// package: the calls a TypeScript user writes, for Node and for pages.
import { VisionModel, drawPrediction, ImageError, ModelFileError, type Prediction, type Detection, type LoadOptions } from 'vision-tasks';

export async function classify(path: string): Promise<string | null> {
  const options: LoadOptions = { backend: 'wasm', scoreThreshold: 0.3, batchSize: 4 };
  const model: VisionModel = await VisionModel.load(path, options);
  const one: Prediction = await model.predict(path);
  const many: Prediction[] = await model.predict([path, new Uint8Array(8), new Blob([])]);
  const boxes: number[][] = many.flatMap((p) => (p.detections ?? []).map((d: Detection) => [...d.box]));
  const [height, width]: [number, number] = model.inputSize;
  console.log(boxes.length, height * width, one.top(3).map((c) => `${c.name} ${c.score.toFixed(3)}`));
  await model.dispose();
  return one.name;
}

export async function page(img: HTMLImageElement, canvas: HTMLCanvasElement, file: File, bytes: ArrayBuffer): Promise<number> {
  const model = await VisionModel.load(fetch('model.onnx'), { backend: 'webgpu' });
  const results = await model.predict([img, canvas, file, bytes, fetch('photo.jpg'), new ImageData(2, 2)]);
  const ctx = canvas.getContext('2d');
  if (!ctx) return 0;
  const shown = drawPrediction(ctx, results[0], { scale: 2, threshold: 0.5 });
  const area = results[0].detections?.[0]?.mask?.area() ?? 0;
  return shown.detections.length + area + (model.backendNote ? 1 : 0);
}

export function describe(err: unknown): string {
  if (err instanceof ModelFileError || err instanceof ImageError) return err.message;
  return String(err);
}
