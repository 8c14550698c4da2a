// The page every browser consumer builds (Vite, esbuild) or serves (import map): it takes
// the installed package's module, loads ?model= on WASM (?threshold=) and predicts ?image= given as every
// kind of input a page has, and ?icc= (the ICC photo) as a URL and as an <img>; the results
// (toDict() of each) land in window.__vt for the browser test, and are drawn with
// drawPrediction. A <video> (a clip this page records from the image, lossy: no Python
// counterpart) must give the results of its current frame drawn on a canvas.
// body[data-state] is "done" or "error".

/** A <video> of a short WebM clip of `image` (MediaRecorder), seeked into, and a canvas of that frame. */
async function videoOf(image) {
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const recorder = new MediaRecorder(canvas.captureStream(10), { mimeType: 'video/webm' });
  const chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  recorder.start();
  for (let i = 0; i < 10; i++) {
    canvas.getContext('2d').drawImage(image, 0, 0);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await new Promise((resolve) => { recorder.onstop = resolve; recorder.stop(); });
  const video = document.createElement('video');
  video.muted = true;
  video.src = URL.createObjectURL(new Blob(chunks, { type: 'video/webm' }));
  await new Promise((resolve, reject) => { video.onloadeddata = resolve; video.onerror = () => reject(new Error('the clip does not play')); });
  video.currentTime = 0.2;
  await new Promise((resolve) => { video.onseeked = resolve; });
  const frame = document.createElement('canvas');
  frame.width = video.videoWidth;
  frame.height = video.videoHeight;
  frame.getContext('2d').drawImage(video, 0, 0);
  return { video, frame };
}

/** @param {typeof import('vision-tasks')} vt */
export async function runChecks(vt) {
  const params = new URLSearchParams(location.search);
  const status = document.getElementById('status');
  try {
    const model = await vt.VisionModel.load(params.get('model'), { backend: 'wasm', scoreThreshold: Number(params.get('threshold') ?? 0.25) });
    const imageUrl = params.get('image');
    const bytes = await (await fetch(imageUrl)).arrayBuffer();
    const blob = new Blob([bytes], { type: 'image/png' });
    const img = new Image();
    img.src = imageUrl;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const offscreen = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
    offscreen.getContext('2d').drawImage(img, 0, 0);
    const bitmap = await createImageBitmap(blob);
    const kinds = {
      'URL string': imageUrl, URL: new URL(imageUrl, location.href), ArrayBuffer: bytes,
      Uint8Array: new Uint8Array(bytes), Blob: blob, File: new File([blob], 'image.png'),
      'Promise of a Response': fetch(imageUrl), ImageData: ctx.getImageData(0, 0, canvas.width, canvas.height),
      canvas, OffscreenCanvas: offscreen, img, ImageBitmap: bitmap,
      VideoFrame: new VideoFrame(bitmap, { timestamp: 0 }),
    };
    const predictions = await model.predict(Object.values(kinds));
    const results = Object.fromEntries(Object.keys(kinds).map((k, i) => [k, predictions[i].toDict()]));
    const icc = {};
    if (params.get('icc')) {
      const photo = new Image();
      photo.src = params.get('icc');
      icc.url = (await model.predict(params.get('icc'))).toDict();
      icc.img = (await model.predict(photo)).toDict();
    }
    const { video, frame } = await videoOf(img);
    const [fromVideo, fromFrame] = (await model.predict([video, frame])).map((p) => JSON.stringify(p.detections ?? p.top()));
    const shown = vt.drawPrediction(ctx, predictions[0]);
    document.body.append(canvas);
    window.__vt = { results, icc, backend: model.backend, drawn: shown.detections.length, videoAsFrame: fromVideo === fromFrame };
    status.textContent = `${Object.keys(results).length} inputs, ${shown.detections.length} detections drawn`;
    document.body.dataset.state = 'done';
  } catch (err) {
    window.__vt = { error: `${err.name}: ${err.message}` };
    status.textContent = window.__vt.error;
    document.body.dataset.state = 'error';
  }
}
