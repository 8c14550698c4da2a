"""Video sources for ``vision-tasks predict``: files, folders of them, streams and cameras,
read frame by frame with OpenCV's ``VideoCapture``.

Why OpenCV and not PyAV: the runtime already depends on ``opencv-python-headless``, whose
wheels carry FFmpeg's demuxers and software decoders (H.264, HEVC, VP8/9, AV1, MPEG-4,
MJPEG...) and open RTSP/HTTP streams and V4L2 cameras through the same ``VideoCapture``
call, so videos add no dependency to the base install. PyAV gives finer control (exact
seeking by timestamp, per-packet errors, its own encoders) at the price of another ~30 MB
FFmpeg build beside OpenCV's; none of that is needed to read frames in order. OpenCV's
``VideoWriter`` has no H.264 encoder in those wheels, which is why annotated videos are MPEG-4
Part 2 (``mp4v``) files, and why ``benchmarks/video.py`` makes its H.264 inputs with PyAV.

A source is read by one thread (decoding a video is sequential by nature) into a queue of a
few frames (:func:`prefetch`), so memory stays bounded however long the video; letterboxing
and the model run in the same worker threads and lanes as images do
(:mod:`vision_tasks.export.runtime.pipeline`).
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own log lines: ours say it once
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from vision_tasks.imaging import IMAGE_SUFFIXES  # noqa: E402

from .sources import SourceError  # noqa: E402

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg",
                            ".ts", ".mts", ".wmv", ".flv", ".3gp", ".ogv"})
"""File suffixes (lower case) that ``predict`` reads as videos."""
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                  "srt://")
CAMERA = re.compile(r"camera:(\d+)\Z")
DEFAULT_RECONNECTS = 3
PREFETCH_FRAMES = 8  # decoded frames waiting for the pipeline (each a full-size RGB frame)
COUNT_SLACK = 2  # a container's frame count may be an estimate off by this many frames

T = TypeVar("T")


class VideoError(SourceError):
    """A video cannot be opened or read."""


def is_live(source: str) -> bool:
    """A stream URL or ``camera:N``: no end known, read as it comes, reconnected on a drop."""
    return source.lower().startswith(STREAM_SCHEMES) or CAMERA.match(source) is not None


def _is_video_file(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def find_videos(source: str) -> list[str] | None:
    """The videos ``source`` names, or None when it names images (:func:`find_sources`).

    A stream URL or ``camera:N`` is one live source; a file with a video suffix is one video;
    a folder is a folder of videos when it holds video files (recursive, sorted, hidden names
    skipped) and no images.

    Raises:
        SourceError: a folder holds both images and videos.
    """
    if is_live(source):
        return [source]
    path = Path(source)
    if path.is_file():
        return [source] if _is_video_file(source) else None
    if not path.is_dir():
        return None
    videos, images = [], 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            videos += [os.path.join(dirpath, name)] if _is_video_file(name) else []
            images += os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
    if videos and images:
        raise SourceError(f"folder {source} holds both videos ({len(videos)}) and images "
                          f"({images}); predict them in two runs (pass each video, or a folder "
                          "of one kind)")
    return videos or None


def display_name(source: str) -> str:
    """A file-name-safe name of a live source (``camera0``, ``rtsp_host_554_live``)."""
    body = source.split("://", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", body).strip("_")[:80] or "stream"


@dataclass
class Frame:
    """One decoded frame on its way through the pipeline.

    Attributes:
        video: the source as given (path, URL or ``camera:N``).
        index: 0-based frame number in the source (every frame counts, whatever the stride).
        timestamp: seconds from the start: the frame's presentation time for a file, the
            time since the source was opened for a live one.
        image: uint8 RGB ``[H, W, 3]``; set to None once the pipeline has letterboxed it.
    """

    video: str
    index: int
    timestamp: float
    image: np.ndarray | None = None

    @property
    def source_label(self) -> str:
        """How the pipeline names this frame (:func:`~.sources.source_name`): unique per frame."""
        return f"{self.video}#{self.index}"


@dataclass
class VideoInfo:
    """What the container says: frames per second (0 when unknown), frame count (None for a
    live source or when unknown), frame size in pixels."""

    fps: float
    frame_count: int | None
    width: int
    height: int


class VideoReader:
    """Frames ``start, start + stride, ...`` of one source, in order.

    Args:
        source: a video file, a stream URL or ``camera:N``.
        stride: keep every ``stride``-th frame (``--vid-stride``).
        start: the first frame to keep (``--resume``: the frame after the last one done);
            the frames before it are skipped with ``grab()`` (demuxed and decoded, not
            converted), which is exact whatever the codec, unlike a seek.
        reconnects: for a live source, how many times a dropped connection is reopened
            before giving up (each said on ``log``).
        open_capture: what opens a source (``cv2.VideoCapture``; tests pass a stand-in).
        log: where notes go (default: standard error).

    After iteration, :attr:`error` holds the one-line reason the source ended early (a
    truncated or corrupt file, a stream that stayed down), else None; :attr:`frames_read`
    counts the frames kept.

    Raises:
        VideoError: the source cannot be opened (on construction).
    """

    def __init__(self, source: str, stride: int = 1, start: int = 0,
                 reconnects: int = DEFAULT_RECONNECTS,
                 open_capture: Callable[[Any], Any] = cv2.VideoCapture,
                 log: Callable[[str], None] | None = None, retry_seconds: float = 1.0) -> None:
        if stride < 1 or start < 0 or reconnects < 0:
            raise ValueError(f"stride >= 1, start >= 0, reconnects >= 0; got {stride}, {start}, "
                             f"{reconnects}")
        self.source, self.stride, self.start = source, stride, start
        self.reconnects, self.retry_seconds = reconnects, retry_seconds
        self.live = is_live(source)
        self._open_capture = open_capture
        self._log = log or (lambda text: print(text, file=sys.stderr))
        self.error: str | None = None
        self.frames_read = 0
        self._capture = self._open()
        if self._capture is None:
            what = ("cannot be opened; check it is connected and not in use" if CAMERA.match(source)
                    else "cannot be opened; check the URL and that the stream is up" if self.live
                    else "cannot be opened as a video (not a video, cut short before its index, "
                         "or a codec this OpenCV lacks); check that the file plays")
            raise VideoError(f"{source}: {what}")
        self.info = self._read_info()
        self._opened_at = time.monotonic()

    def _open(self) -> Any:
        camera = CAMERA.match(self.source)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our error says it
        try:
            capture = self._open_capture(int(camera.group(1)) if camera else self.source)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            capture.release()
            return None
        return capture

    def _read_info(self) -> VideoInfo:
        get = self._capture.get
        fps = float(get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(fps if np.isfinite(fps) and fps > 0 else 0.0,
                         count if count > 0 and not self.live else None,
                         int(get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                         int(get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))

    def frames_to_read(self) -> int | None:
        """How many frames iteration will give, when the container says (a progress total)."""
        count = self.info.frame_count
        return None if count is None else max(0, -(-(count - self.start) // self.stride))

    def close(self) -> None:
        """Release the source without reading it (iteration releases it at its end)."""
        self._capture.release()

    def _timestamp(self, index: int) -> float:
        if self.live:
            return round(time.monotonic() - self._opened_at, 3)
        msec = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        if np.isfinite(msec) and (msec > 0 or index == 0):
            return round(msec / 1000.0, 6)
        return round(index / self.info.fps, 6) if self.info.fps else 0.0

    def _reconnect(self, index: int) -> bool:
        """Reopen a dropped live source, up to :attr:`reconnects` tries; True when it is back."""
        self._capture.release()
        for attempt in range(1, self.reconnects + 1):
            self._log(f"predict: {self.source} dropped after frame {index - 1}; reconnecting "
                      f"({attempt}/{self.reconnects})")
            time.sleep(self.retry_seconds * attempt)
            capture = self._open()
            if capture is not None:
                self._capture = capture
                return True
        self._capture = _Closed()
        return False

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while True:
                keep = index >= self.start and (index - self.start) % self.stride == 0
                ok = self._capture.grab()
                image = self._capture.retrieve()[1] if ok and keep else None
                if not ok or (keep and image is None):
                    if self.live and self._reconnect(index):
                        continue
                    self._ended(index)
                    return
                if keep:
                    self.frames_read += 1
                    yield Frame(self.source, index, self._timestamp(index),
                                cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            self._capture.release()

    def _ended(self, index: int) -> None:
        """Set :attr:`error` when the source stopped before its end."""
        count = self.info.frame_count
        if self.live:
            self.error = (f"{self.source}: stream ended or dropped after frame {index - 1}; "
                          f"{self.reconnects} reconnects failed; the {self.frames_read} frames "
                          "before are kept")
        elif count is not None and index < count - COUNT_SLACK:
            self.error = (f"{self.source}: video ends at frame {index} of the {count} its "
                          "container announces (truncated or corrupt); the "
                          f"{self.frames_read} frames before are kept")


class _Closed:
    """A capture that gives nothing (a live source that stayed down)."""

    def grab(self) -> bool:
        return False

    def release(self) -> None:
        pass


def prefetch(items: Iterable[T], depth: int = PREFETCH_FRAMES) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer.

    An exception in the producer is raised in the consumer; closing the generator early
    stops the producer at its next item.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(("end", None))
        except BaseException as err:  # handed to the consumer
            buffer.put(("error", err))

    thread = threading.Thread(target=produce, name="video-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # let a blocked put finish so the thread sees the stop
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(0.05)
