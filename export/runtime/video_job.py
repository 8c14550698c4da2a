"""The video side of ``vision-tasks predict``: frames in, one JSONL line per frame out.

Each kept frame (``--vid-stride``) of each source becomes one line of ``OUT/predictions.jsonl``:
``{"source", "frame", "timestamp", ...}`` then the same fields as an image's line
(:meth:`Prediction.to_dict`; with ``--track`` each detection also has ``track_id``). Lines are
flushed as frames finish, in frame order, so ``--resume`` continues each source at the frame
after its last line (each frame once). A source that cannot be opened, or that ends before
its container said (truncated, corrupt, a stream that stayed down), gets one line in
``OUT/errors.jsonl``; the frames before it stay. ``--save-video`` writes
``OUT/videos/<name>.mp4`` (drawn as ``--save-images`` draws, at the source's frame rate);
``--track`` also writes ``OUT/mot/<name>.txt`` in the MOTChallenge text format
(``frame,id,x,y,w,h,score,-1,-1,-1``, frames from 1) for ``vision-tasks track-eval``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from vision_tasks.errors import OutputExistsError, OutputWriteError
from vision_tasks.imaging import Letterbox
from vision_tasks.results import Prediction, json_line

from .batch import (
    ERRORS,
    PREDICTIONS,
    PredictSummary,
    _check_out,
    _Writer,
    drop_error_lines,
    json_text,
)
from .decode import Outputs
from .draw import draw_prediction
from .earlier_run import string_list
from .pipeline import Outcome, predict_stream
from .predictor import Predictor
from .run_record import add_outputs, model_record, read_record
from .video import Frame, VideoError, VideoReader, display_name, is_live, prefetch

VIDEOS = "videos"
MOT = "mot"
VIDEO_FOURCC = "mp4v"  # MPEG-4 Part 2: the encoder every OpenCV wheel has
DEFAULT_FPS = 25.0  # an annotated video's rate when the source does not say
FRAMES_QUEUED = 8  # drawn frames waiting for the video writer thread


class _FrameModel:
    """The predictor as :func:`predict_stream` sees it, taking :class:`Frame` s as sources."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.batch_size, self.lanes = predictor.batch_size, predictor.lanes

    def load(self, frame: Frame, keep_original: bool = False
             ) -> tuple[np.ndarray, Letterbox, np.ndarray | None]:
        image, lb, original = self.predictor.load(frame.image, keep_original)
        frame.image = None  # only the letterboxed copy (and the original, if kept) stays
        return image, lb, original

    def run_lane(self, images: np.ndarray) -> Outputs:
        return self.predictor.run_lane(images)

    def decode(self, outputs: Outputs, letterboxes: Sequence[Letterbox],
               sources: Sequence[str]) -> list[Prediction]:
        return self.predictor.decode(outputs, letterboxes, sources)


@dataclass
class VideoProgress:
    """What ``OUT`` already holds per source: the last frame written, the largest track id."""

    last_frame: dict[str, int] = field(default_factory=dict)
    last_track: dict[str, int] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    outputs: set[str] | None = None  # the videos and MOT files run.json lists (None: no list)


def read_progress(out: Path) -> VideoProgress:
    """The frames done in ``OUT/predictions.jsonl`` and the sources in ``OUT/errors.jsonl``
    (their torn last lines were cut by the run's start, see :func:`~.batch.read_done`)."""
    progress = VideoProgress()
    for name, is_error in ((PREDICTIONS, False), (ERRORS, True)):
        path = out / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                    source = record["source"]
                except (ValueError, KeyError, TypeError):
                    continue
                if not isinstance(source, str):
                    continue  # not a line this product wrote: its source is predicted again
                if is_error:
                    progress.failed.add(source)
                elif isinstance(record.get("frame"), int) and not isinstance(record["frame"], bool):
                    frame = record["frame"]
                    progress.last_frame[source] = max(progress.last_frame.get(source, -1), frame)
                    found = record.get("detections")
                    ids = [d.get("track_id") for d in found if isinstance(d, dict)] \
                        if isinstance(found, list) else []
                    ids = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
                    progress.last_track[source] = max([progress.last_track.get(source, 0), *ids])
    return progress


def output_name(source: str, root: str) -> str:
    """``source``'s name under ``OUT/videos`` and ``OUT/mot``, without suffix: its path below
    the common ``root`` of a folder of videos, its file stem, or a live source's safe name."""
    if is_live(source):
        return display_name(source)
    relative = os.path.relpath(os.path.abspath(source), root) if root else os.path.basename(source)
    return os.path.splitext(relative)[0]


class _AnnotatedVideo:
    """Draws frames and writes them, in order, in one background thread, into
    ``path.partial.mp4``, renamed to ``path`` when the source is done (a killed run leaves no
    half-written file under the final name)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps or DEFAULT_FPS
        self.partial = path.with_name(path.stem + ".partial.mp4")
        self.writer: Any = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-write")
        self.pending: list[Future[None]] = []

    def _write(self, image: np.ndarray, prediction: Prediction, ids: list[int] | None) -> None:
        canvas = cv2.cvtColor(draw_prediction(image, prediction, track_ids=ids), cv2.COLOR_RGB2BGR)
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = canvas.shape[:2]
            self.writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*VIDEO_FOURCC),
                                          self.fps, (w, h))
            if not self.writer.isOpened():
                raise OutputWriteError(f"{self.partial}: cannot write the annotated video; check "
                                       "that the folder is writable and has free space")
        self.writer.write(canvas)

    def add(self, image: np.ndarray, prediction: Prediction, ids: list[int] | None) -> None:
        self.pending.append(self.pool.submit(self._write, image, prediction, ids))
        while len(self.pending) > FRAMES_QUEUED or (self.pending and self.pending[0].done()):
            self.pending.pop(0).result()

    def close(self, complete: bool) -> Path | None:
        try:
            for pending in self.pending:
                pending.result()
        finally:
            self.pool.shutdown()
            if self.writer is not None:
                self.writer.release()
        if self.writer is None or not complete:
            return None
        os.replace(self.partial, self.path)
        return self.path


class _MotFile:
    """``OUT/mot/<name>.txt``: one line per tracked object, flushed per frame."""

    def __init__(self, path: Path, keep_to_frame: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_to_frame < 0:  # a fresh source: this run's file replaces one of that name
            path.write_text("")
        elif path.is_file():  # keep only the frames that predictions.jsonl holds too
            kept = [line for line in path.read_text().splitlines(keepends=True)
                    if line.endswith("\n") and int(line.split(",", 1)[0]) <= keep_to_frame + 1]
            path.write_text("".join(kept))
        self.file: IO[str] = open(path, "a")

    def write(self, index: int, record: dict[str, Any]) -> None:
        for det in record.get("detections") or []:
            x1, y1, x2, y2 = det["box"]
            self.file.write(f"{index + 1},{det['track_id']},{x1:.2f},{y1:.2f},{x2 - x1:.2f},"
                            f"{y2 - y1:.2f},{det['score']:.4f},-1,-1,-1\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


@dataclass
class VideoOptions:
    """How ``predict`` reads and writes videos (the CLI's video flags)."""

    stride: int = 1
    save_video: bool = False
    reconnects: int = 3
    tracker: Callable[[int], Any] | None = None  # first id -> a fresh tracker per source
    tracker_record: dict[str, Any] | None = None  # its settings, for run.json


def run_predict_video(predictor: Predictor, videos: list[str], out: str | os.PathLike,
                      options: VideoOptions, workers: int | None = None, resume: bool = False,
                      overwrite: bool = False, progress: bool = True,
                      log: Callable[[str], None] | None = None,
                      retry_errors: bool = False) -> PredictSummary:
    """Predict every frame ``options.stride`` keeps of every source in ``videos`` into ``out``
    (see the module docstring). ``predicted`` counts frames, ``errors`` sources that failed.

    Memory: at most ``PREFETCH_FRAMES`` decoded frames wait to be letterboxed, the pipeline
    holds ``workers + 1 + lanes`` batches, and ``--save-video`` queues ``FRAMES_QUEUED`` drawn
    frames: bounded by the frame size, whatever the video's length. ``retry_errors`` (with
    ``resume``): a source in ``errors.jsonl`` is tried again (from the frame after its last
    line), as :func:`~.batch.run_predict` does.

    Raises:
        OutputExistsError, OutputWriteError: as :func:`~.batch.run_predict`.
    """
    from tqdm import tqdm

    out = Path(out)
    record = {**model_record(predictor), "vid_stride": options.stride,
              "track": options.tracker_record, "outputs": []}
    for folder in ((out / VIDEOS, out / MOT) if not (resume or overwrite) else ()):
        if folder.is_dir() and any(folder.iterdir()):  # not ours to write into
            raise OutputExistsError(f"{folder} already exists; choose another --out, or pass "
                                    "--overwrite (it replaces only the files this run writes "
                                    "there, and those of an earlier run)")
    listed = string_list(read_record(out), "outputs") if resume else None
    _check_out(out, resume, overwrite, record)  # --overwrite: deletes the earlier run's files
    done = read_progress(out) if resume else VideoProgress()
    done.outputs = set(listed) if listed is not None else None
    if resume and retry_errors:
        names = {json_text(v) for v in videos}
        drop_error_lines(out / ERRORS, done.failed & names)
        done.failed -= names
    files = [v for v in videos if not is_live(v)]
    root = os.path.commonpath([os.path.dirname(os.path.abspath(v)) for v in files]) \
        if len(files) > 1 else ""
    counts = {"predicted": 0, "errors": 0, "skipped": 0, "failed_before": 0}
    writer = _Writer(out)
    t0 = time.perf_counter()
    try:
        with tqdm(total=0, unit="frame", desc="predict", disable=not progress,
                  dynamic_ncols=True) as bar:
            for video in videos:
                if json_text(video) in done.failed:
                    counts["skipped"] += 1
                    counts["failed_before"] += 1
                    continue
                last = done.last_frame.get(json_text(video), -1)
                counts["skipped"] += last // options.stride + 1 if last >= 0 else 0
                _one_video(predictor, video, out, output_name(video, root), options, workers,
                           last, done.last_track.get(json_text(video), 0), writer, bar, counts,
                           log, done.outputs)
    except BaseException:
        writer.close(quiet=True)
        raise
    writer.close()
    return PredictSummary(out, counts["predicted"], counts["errors"], counts["skipped"],
                          time.perf_counter() - t0, failed_before=counts["failed_before"])


def _one_video(predictor: Predictor, video: str, out: Path, name: str, options: VideoOptions,
               workers: int | None, last: int, last_track: int, writer: _Writer, bar: Any,
               counts: dict[str, int], log: Callable[[str], None] | None,
               listed: set[str] | None = None) -> None:
    """Frames ``last + stride, ...`` of ``video`` -> lines (and drawings, tracks); ``listed``
    (``--resume``): the files the earlier run wrote, the only ones this run may replace."""
    start = last + options.stride if last >= 0 else 0
    if is_live(video) and last >= 0:
        start = 0  # a live source has no frame to go back to: it continues from now
    try:
        reader = VideoReader(video, options.stride, start, options.reconnects, log=log)
    except VideoError as err:
        writer.write(Outcome(video, error=str(err)))
        (log or _stderr)(f"predict: {err}")
        counts["errors"] += 1
        bar.set_postfix(errors=counts["errors"], refresh=False)
        return
    offset = last + 1 if is_live(video) and last >= 0 else 0  # live: numbering goes on
    todo = reader.frames_to_read()
    if todo == 0:  # done before (--resume): nothing to decode
        reader.close()
        return
    if todo is not None:
        bar.total = (bar.total or 0) + todo
        bar.refresh()
    tracker = options.tracker(last_track + 1) if options.tracker else None
    suffix = f".from{start}" if start and not is_live(video) else ""
    annotated = (_AnnotatedVideo(out / VIDEOS / f"{name}{suffix}.mp4", reader.info.fps)
                 if options.save_video else None)
    paths = [p.relative_to(out).as_posix() for p in (
        *((annotated.path, annotated.partial) if annotated is not None else ()),
        *((out / MOT / f"{name}.txt",) if tracker is not None else ()))]
    foreign = [p for p in paths if listed is not None and p not in listed
               and ((out / p).exists() or (out / p).is_symlink())]
    if foreign:
        reader.close()
        raise OutputExistsError(f"{out / foreign[0]}: not written by the run in {out}, and "
                                "--resume replaces no other file; move it away, or pass "
                                "--overwrite to start again")
    add_outputs(out, paths)
    mot = _MotFile(out / MOT / f"{name}.txt", last) if tracker is not None else None
    frames: dict[str, Frame] = {}

    def labelled() -> Any:
        for frame in prefetch(reader):
            frame.index += offset
            frames[frame.source_label] = frame
            yield frame

    complete = False
    try:
        for outcome in predict_stream(_FrameModel(predictor), labelled(), workers=workers,
                                      keep_original=options.save_video):
            frame = frames.pop(outcome.source)
            if outcome.prediction is None:
                writer.write(Outcome(video, error=f"frame {frame.index}: {outcome.error}"))
                counts["errors"] += 1
                continue
            prediction = outcome.prediction
            prediction.source = video
            ids = _track(tracker, prediction) if tracker is not None else None
            line = {"source": json_text(video), "frame": frame.index,
                    "timestamp": frame.timestamp, **prediction.to_dict()}
            line["source"] = json_text(video)
            for det, track_id in zip(line.get("detections") or [], ids or [], strict=False):
                det["track_id"] = track_id
            if mot is not None:  # before the frame's line: the line says the frame is done, and
                mot.write(frame.index, line)  # --resume keeps the MOT rows of done frames only
            _write_line(writer, line)
            if annotated is not None and outcome.original is not None:
                annotated.add(outcome.original, prediction, ids)
            counts["predicted"] += 1
            bar.update(1)
        complete = reader.error is None
    finally:
        if annotated is not None:
            annotated.close(complete)
        if mot is not None:
            mot.close()
    if reader.error is not None:
        writer.write(Outcome(video, error=reader.error))
        counts["errors"] += 1
        (log or _stderr)(f"predict: {reader.error}")


def _track(tracker: Any, prediction: Prediction) -> list[int]:
    """Update ``tracker`` with the frame's detections; keep only the tracked ones (in the
    tracker's order) and return their ids."""
    dets = prediction.detections or []
    boxes = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
    scores = np.array([d.score for d in dets], np.float64)
    labels = np.array([d.label for d in dets], np.int64)
    ids = tracker.update(boxes, scores, labels)
    kept = [(det, int(i)) for det, i in zip(dets, ids, strict=True) if i > 0]
    prediction.detections = [det for det, _ in kept]
    return [i for _, i in kept]


def _write_line(writer: _Writer, record: dict[str, Any]) -> None:
    path = writer.paths["predictions"]
    try:
        writer.files["predictions"].write(json_line(record))
        writer.files["predictions"].flush()
    except OSError as err:
        raise OutputWriteError(f"{path}: cannot write ({err.strerror or err}); free some disk "
                               "space (or pass another --out), then run the same command with "
                               f"--resume: the {writer.done} frames done so far are kept") from None
    writer.done += 1


def _stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr)
