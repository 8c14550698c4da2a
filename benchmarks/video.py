"""Video and tracking figures of benchmarks/RESULTS.md (issue 27).

``speed``: frames/s of ``vision-tasks predict`` on 1080p and 720p H.264 files made here from
synthetic frames (:func:`vision_tasks.data.synth_track.render_sequence`, upscaled; encoded by
PyAV's libx264: the ``video-bench`` extra): the decoding thread alone, the model alone on
letterboxed batches, and the whole run (decode, letterbox, model, JSONL) at 1 and 2 lanes,
interleaved over ``--rounds``, medians reported, load average stated.

``track``: ``predict --track`` of a detect model on the held-out (val) videos of
``vision-tasks data synth track``, scored by ``track-eval`` against their ground truth; and
the same detections (``predict`` at score 0.1) through Ultralytics' BYTETracker when it can
be imported (``ultralytics`` and ``lap``; not a dependency of vision-tasks). ``oracle``: both
trackers on the ground-truth boxes with 10 % dropped and 5 % jitter (association alone,
whatever the detector).

    .venv/bin/python benchmarks/video.py speed MODEL.onnx --out /tmp/video-bench
    .venv/bin/python benchmarks/video.py track MODEL.onnx DATA --out /tmp/video-track
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.track import TrackerConfig, make_tracker
from vision_tasks.export.runtime.video import VideoReader
from vision_tasks.export.runtime.video_job import VideoOptions, run_predict_video

from vision_tasks.data.synth_track import render_sequence
from vision_tasks.metrics.track import SequenceCounts, evaluate_sequence
from vision_tasks.metrics.track_eval import evaluate_folders, find_sequences, read_mot

SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def make_h264(path: Path, size: tuple[int, int], frames: int, fps: int = 30) -> Path:
    """An H.264 (libx264, CRF 23, preset veryfast, yuv420p) file of synthetic shapes moving."""
    import av

    width, height = size
    images, _ = render_sequence(np.random.default_rng(0), 270, frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for image in images:
            frame = av.VideoFrame.from_ndarray(
                cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_rate(video: Path) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in VideoReader(str(video)))
    return count / (time.perf_counter() - t0)


def model_rate(predictor: Predictor, video: Path, batches: int = 4) -> float:
    frame = next(iter(VideoReader(str(video)))).image
    image, _, _ = predictor.load(frame)
    batch = np.stack([image] * predictor.batch_size)
    predictor.run(batch)  # warm-up
    t0 = time.perf_counter()
    for _ in range(batches):
        predictor.run(batch)
    return batches * predictor.batch_size / (time.perf_counter() - t0)


def predict_rate(model: str, video: Path, lanes: int, batch: int) -> float:
    predictor = Predictor(model, device="cpu", batch_size=batch, lanes=lanes)
    with tempfile.TemporaryDirectory() as out:
        summary = run_predict_video(predictor, [str(video)], out, VideoOptions(), progress=False)
    return summary.predicted / summary.seconds


def cmd_speed(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    videos = {name: out / f"shapes_{name}.mp4" for name in SIZES}
    for name, path in videos.items():
        if not path.is_file():
            make_h264(path, SIZES[name], args.frames)
    predictor = Predictor(args.model, device="cpu", batch_size=args.batch_size)
    samples: dict[str, dict[str, list[float]]] = {n: {} for n in videos}
    loads = [load()]
    for _ in range(args.rounds):
        for name, path in videos.items():
            for key, measure in (("decode", lambda p=path: decode_rate(p)),
                                 ("model", lambda p=path: model_rate(predictor, p)),
                                 ("predict_1_lane", lambda p=path: predict_rate(args.model, p, 1,
                                                                                args.batch_size)),
                                 ("predict_2_lanes", lambda p=path: predict_rate(args.model, p, 2,
                                                                                 args.batch_size))):
                samples[name].setdefault(key, []).append(measure())
        loads.append(load())
    report = {"frames": args.frames, "batch_size": args.batch_size,
              "model": args.model, "input_size": list(predictor.input_size), "load": loads,
              "frames_per_s": {n: {k: round(statistics.median(v), 1) for k, v in s.items()}
                               for n, s in samples.items()}}
    return report


class _Detections:
    """Our detections of one frame as Ultralytics' trackers read a ``Boxes`` object."""

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = boxes.reshape(-1, 4), scores, labels.astype(float)
        self.xywh = np.concatenate([(self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2,
                                    self.xyxy[:, 2:] - self.xyxy[:, :2]], 1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, keep: np.ndarray) -> _Detections:
        return _Detections(self.xyxy[keep], self.conf[keep], self.cls[keep])


def ultralytics_tracks(lines: list[dict], config: TrackerConfig) -> dict[int, tuple]:
    """Frames of one video's detections (predictions.jsonl lines) through Ultralytics'
    BYTETracker with our settings; ``frame -> (ids, boxes)`` (frames from 1)."""
    from ultralytics.trackers.byte_tracker import BYTETracker

    tracker = BYTETracker(SimpleNamespace(
        track_high_thresh=config.high_score, track_low_thresh=config.low_score,
        new_track_thresh=config.new_track_score, track_buffer=config.buffer_frames,
        match_thresh=1 - config.match_iou, fuse_score=True))
    frames = {}
    for line in lines:
        dets = line["detections"]
        boxes = np.array([d["box"] for d in dets], float).reshape(-1, 4)
        rows = tracker.update(_Detections(boxes, np.array([d["score"] for d in dets], float),
                                          np.array([d["label"] for d in dets], float)))
        rows = np.asarray(rows, float).reshape(-1, 8)
        frames[line["frame"] + 1] = (rows[:, 4].astype(np.int64), rows[:, :4])
    return frames


def oracle_detections(gt: dict, rng: np.random.Generator, miss: float = 0.1,
                      jitter: float = 0.05) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Ground-truth boxes as a detector that misses ``miss`` of them and moves each side by
    up to ``jitter`` of the box size: ``(frame, boxes, scores)`` per frame."""
    frames = []
    for f in sorted(gt):
        boxes = gt[f][1]
        keep = rng.random(len(boxes)) >= miss
        size = np.repeat(boxes[:, 2:] - boxes[:, :2], 2, 0).reshape(-1, 4)
        noisy = boxes + rng.uniform(-jitter, jitter, boxes.shape) * size
        frames.append((f, noisy[keep], rng.uniform(0.5, 1.0, int(keep.sum()))))
    return frames


def cmd_oracle(gt_root: Path, config: TrackerConfig, with_ultralytics: bool) -> dict:
    """Both trackers on :func:`oracle_detections` of every sequence: association alone."""
    ours, theirs = SequenceCounts(), SequenceCounts()
    for gt_file in find_sequences(gt_root).values():
        gt = read_mot(gt_file, True)
        dets = oracle_detections(gt, np.random.default_rng(0))
        tracker = make_tracker(config)(1)
        tracked = {}
        for f, boxes, scores in dets:
            ids = tracker.update(boxes, scores, np.zeros(len(boxes)))
            tracked[f] = (ids[ids > 0], boxes[ids > 0])
        ours = ours + evaluate_sequence(gt, tracked)
        if with_ultralytics:
            lines = [{"frame": f - 1, "detections": [{"box": b.tolist(), "score": float(s),
                                                      "label": 0} for b, s in zip(bx, sc, strict=True)]}
                     for f, bx, sc in dets]
            theirs = theirs + evaluate_sequence(gt, ultralytics_tracks(lines, config))
    return {"ours": ours.summary(), **({"ultralytics": theirs.summary()} if with_ultralytics
                                       else {})}


def cmd_track(args: argparse.Namespace) -> dict:
    data, out = Path(args.data), Path(args.out)
    videos = sorted(str(p) for p in (data / "videos" / "val").glob("*.avi"))
    gt = data / "mot" / "val"
    config = TrackerConfig()
    predictor = Predictor(args.model, device="cpu", score_threshold=config.low_score)
    options = VideoOptions(tracker=make_tracker(config), tracker_record=config.record())
    t0 = time.perf_counter()
    summary = run_predict_video(predictor, videos, out / "ours", options, overwrite=True,
                                progress=False)
    seconds = time.perf_counter() - t0
    _, ours, _ = evaluate_folders(gt, out / "ours" / "mot")
    report = {"videos": len(videos), "frames": summary.predicted, "seconds": round(seconds, 1),
              "load": load(), "ours": ours}
    try:
        import ultralytics  # noqa: F401
    except ImportError as err:
        report["ultralytics"] = f"not run: {err}"
        report["oracle"] = cmd_oracle(gt, config, with_ultralytics=False)
        return report
    report["oracle"] = cmd_oracle(gt, config, with_ultralytics=True)
    run_predict_video(predictor, videos, out / "detections", VideoOptions(), overwrite=True,
                      progress=False)
    lines: dict[str, list[dict]] = {}
    for raw in (out / "detections" / "predictions.jsonl").read_text().splitlines():
        line = json.loads(raw)
        lines.setdefault(Path(line["source"]).stem, []).append(line)
    total = SequenceCounts()
    for name, gt_file in find_sequences(gt).items():
        total = total + evaluate_sequence(read_mot(gt_file, True),
                                          ultralytics_tracks(lines.get(name, []), config))
    report["ultralytics"] = total.summary()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    speed = verbs.add_parser("speed")
    speed.add_argument("model")
    speed.add_argument("--out", default="/tmp/video-bench")
    speed.add_argument("--frames", type=int, default=150)
    speed.add_argument("--batch-size", type=int, default=8)
    speed.add_argument("--rounds", type=int, default=3)
    speed.set_defaults(func=cmd_speed)
    track = verbs.add_parser("track")
    track.add_argument("model")
    track.add_argument("data", help="a `vision-tasks data synth track` folder")
    track.add_argument("--out", default="/tmp/video-track")
    track.set_defaults(func=cmd_track)
    args = parser.parse_args()
    report = args.func(args)
    print(json.dumps(report, indent=2))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.verb}.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
