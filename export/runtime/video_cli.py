"""``vision-tasks predict`` on videos, streams and cameras: the command-line side of
:mod:`vision_tasks.export.runtime.video_job` (flags checked, the run summarised)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vision_tasks.contract import DEFAULT_SCORE_THRESHOLD
from vision_tasks.errors import VisionTasksError

from .predictor import Predictor
from .video import find_videos
from .video_job import MOT, VIDEOS, VideoOptions, run_predict_video

__all__ = ["check_image_flags", "find_videos", "predict_videos"]

TRACKED_TASKS = ("detect", "segment")


def check_image_flags(args: argparse.Namespace) -> None:
    """Refuse the video flags on a run over images (one line naming the flag)."""
    given = [flag for flag, value in (("--vid-stride", args.vid_stride != 1),
                                      ("--save-video", args.save_video), ("--track", args.track))
             if value]
    if given:
        raise VisionTasksError(f"{given[0]} is an option of videos, and {args.source} names "
                               "images; pass a video file, a folder of videos, a stream URL or "
                               "camera:N (or --save-images for images)")


def predict_videos(args: argparse.Namespace, videos: list[str], ray: Any) -> int:
    """Run ``predict`` over ``videos`` as ``args`` say; the exit status."""
    if ray is not None:
        raise VisionTasksError("--engine ray reads images only; predict videos with the local "
                               "engine (drop --engine ray)")
    if args.save_images:
        raise VisionTasksError(f"--save-images draws images, and {args.source} names videos; "
                               "pass --save-video")
    if args.reconnects < 0:
        raise VisionTasksError(f"--reconnects must be 0 or more, got {args.reconnects}")
    high = DEFAULT_SCORE_THRESHOLD if args.score_threshold is None else args.score_threshold
    options = VideoOptions(stride=args.vid_stride, save_video=args.save_video,
                           reconnects=args.reconnects)
    if args.track:
        from .track import TrackerConfig, make_tracker

        config = TrackerConfig(high_score=high, new_track_score=high,
                               low_score=min(TrackerConfig.low_score, high))
        options.tracker = make_tracker(config)
        options.tracker_record = config.record()
        score_threshold = config.low_score  # ByteTrack's second stage needs the low scores
    else:
        score_threshold = high
    predictor = Predictor(args.model, device=args.device, threads=args.threads,
                          batch_size=args.batch_size, reduced_decode=args.reduced_decode,
                          lanes=args.lanes, score_threshold=score_threshold)
    if args.track and predictor.task not in TRACKED_TASKS:
        raise VisionTasksError(f"--track follows boxes, and {predictor.path.name} is a "
                               f"{predictor.task} model; pass a detect or segment model")
    note = f" ({predictor.provider_note})" if predictor.provider_note else ""
    print(f"predict: {_count(len(videos), 'video source')} with {predictor.path.name} "
          f"({predictor.task}) on {predictor.provider}{note}", file=sys.stderr)
    try:
        summary = run_predict_video(predictor, videos, args.out, options, workers=args.workers,
                                    resume=args.resume, overwrite=args.overwrite,
                                    progress=not args.quiet, retry_errors=args.retry_errors)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished frames are in {args.out}; continue with the same "
              "command plus --resume", file=sys.stderr)
        return 130
    skipped = (f", {summary.skipped} skipped (done before" + (
        f"; {summary.failed_before} sources failed before: add --retry-errors to try them "
        "again" if summary.failed_before else "") + ")" if summary.skipped else "")
    rate = summary.predicted / summary.seconds if summary.seconds > 0 else 0.0
    print(f"predicted {_count(summary.predicted, 'frame')}, {_count(summary.errors, 'error')}"
          f"{skipped} in {summary.seconds:.1f} s ({rate:.1f} frames/s)")
    print(f"  predictions: {summary.predictions_path}")
    if summary.errors:
        print(f"  errors:      {summary.errors_path}")
    if args.save_video:
        print(f"  videos:      {summary.out / VIDEOS}")
    if args.track:
        print(f"  tracks:      {summary.out / MOT} (MOTChallenge text)")
    if summary.errors and not summary.predicted and not summary.skipped:
        print(f"error: no frame of this run could be predicted; the reasons are in "
              f"{summary.errors_path}", file=sys.stderr)
        return 2
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
