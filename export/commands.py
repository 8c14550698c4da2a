"""The ``export``, ``predict`` and ``benchmark`` verbs, added to ``vision-tasks`` through the
``vision_tasks.commands`` entry-point group (see pyproject.toml).

Registering a verb imports nothing heavy; each handler imports what it needs, so
``vision-tasks predict`` never loads torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vision_tasks.errors import VisionTasksError

EXAMPLES_SHOWN = 3


def _device(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--device", default=default,
                        help=f"auto (TensorRT > CUDA > CPU) | cpu | cuda (default {default})")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _reduced_decode(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reduced-decode", action="store_true",
                        help="decode JPEGs far larger than the model input at 1/2 to 1/8 scale: "
                             "faster on photographs, model input slightly smoother than a full "
                             "decode's (see vision_tasks.imaging.load_letterboxed)")


def _lanes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lanes", type=_positive, default=None,
                        help="batches run at once, each on threads/lanes CPU threads "
                             "(default: min(threads, 2))")


def _engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: this machine's threads; ray: Ray Data tasks decode, a pool "
                             "of model actors predicts (the ray extra; README: Predicting on a "
                             "cluster)")
    parser.add_argument("--address", default=None,
                        help="--engine ray: the cluster to join (ray start --head printed it); "
                             "default: a local Ray for this run")
    parser.add_argument("--num-actors", type=_positive, default=None,
                        help="--engine ray: model actors (default: GPUs / --gpus-per-actor, "
                             "else one per two CPUs)")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0,
                        help="--engine ray: GPUs each actor holds (CUDA; 0.5 shares one); "
                             "default 0: CPU actors of --threads threads (default 1)")


def _ray_options(args: argparse.Namespace) -> Any:
    """``RayOptions`` for ``--engine ray``, else None (then no Ray option may be given)."""
    if args.engine != "ray":
        given = [flag for flag, value in (("--address", args.address),
                                          ("--num-actors", args.num_actors),
                                          ("--gpus-per-actor", args.gpus_per_actor)) if value]
        if given:
            raise VisionTasksError(f"{given[0]} is an option of --engine ray; add --engine ray")
        return None
    local_only = [flag for flag, value in (("--workers", args.workers), ("--lanes", args.lanes))
                  if value]
    if local_only:
        raise VisionTasksError(f"{local_only[0]} is an option of the local engine; on Ray, tasks "
                               "decode and each actor runs one batch at a time (--num-actors, "
                               "--threads)")
    from .runtime.ray_engine import RayOptions, check_options

    options = RayOptions(args.address, num_actors=args.num_actors,
                         gpus_per_actor=args.gpus_per_actor, threads=args.threads or 1)
    check_options(options, args.device)
    return options


def add_export(verbs: Any) -> None:
    p = verbs.add_parser("export", help="export a checkpoint to a self-describing ONNX file")
    p.add_argument("checkpoint", help="RUN/weights/best.pt")
    p.add_argument("--out", help="the .onnx file (default: beside the checkpoint)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--fp16", action="store_true",
                   help="the network in float16 (weights and compute); input stays uint8, "
                        "normalisation, scores, NMS / top-K and outputs stay float32 "
                        "(vision_tasks.export.fp16)")
    p.add_argument("--int8", action="store_true",
                   help="quantize the network part to int8 (onnxruntime static QDQ, calibrated "
                        "on the model's own images); normalisation and post-processing stay float")
    p.add_argument("--calibration", default="train", metavar="DATA",
                   help="--int8 calibration images: train or val (the model's data.train / "
                        "data.val), or an image folder / quoted glob / .txt list (default train)")
    p.add_argument("--calibration-images", type=_positive, default=None, metavar="N",
                   help="--int8: how many calibration images, spread over DATA (default 256)")
    p.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"],
                   default="minmax", help="--int8: how activation ranges are set (default minmax)")
    p.add_argument("--check", action="store_true",
                   help="compare PyTorch and onnxruntime on data.val images; fail beyond tolerance "
                        "(--int8: vision-tasks val of the int8 and the fp32 file, each checked "
                        "metric at most 1 point lower)")
    p.add_argument("--image-size", type=_positive, default=None, metavar="N",
                   help="the file's input side in px (default: the model's data.image_size); "
                        "fully convolutional models export at any multiple of their stride")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out that is not a model of vision-tasks export "
                        "(default: refuse; an earlier export is always replaced)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vision_tasks.locks import hold_output

    from .onnx_export import default_output

    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():  # its own message; no lock made beside a missing file
        return _export(args)
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    out = Path(args.out) if args.out else default_output(checkpoint, precision)
    with hold_output(out, is_file=True, sigterm=True):  # one export per file; temp files go
        _check_destination(out, args.overwrite)
        try:
            return _export(args)
        except OSError as err:
            if err.filename is not None:
                raise  # names its file already
            raise VisionTasksError(f"{out}: cannot write ({err.strerror or err}); free some "
                                   "disk space or choose another --out") from None


def _check_destination(out: Any, overwrite: bool) -> None:
    """An existing ``out`` is replaced only when it is a model an earlier export wrote (its
    ONNX metadata has our ``task``), or with ``--overwrite``: never a file of the user's."""
    if overwrite or not out.exists():
        return
    if out.is_dir():
        raise VisionTasksError(f"{out}: is a folder; pass --out the .onnx file to write")
    import onnx

    try:
        ours = any(p.key == "task" for p in onnx.load(str(out), load_external_data=False)
                   .metadata_props)
    except Exception:  # not an ONNX file at all
        ours = False
    if not ours:
        raise VisionTasksError(f"{out}: exists and is not a model written by vision-tasks "
                               "export; choose another --out, or pass --overwrite to replace it")


def _export(args: argparse.Namespace) -> int:
    from .onnx_export import DEFAULT_OPSET, export_checkpoint
    from .quantize import DEFAULT_CALIBRATION_IMAGES

    result = export_checkpoint(args.checkpoint, args.out, opset=args.opset or DEFAULT_OPSET,
                               fp16=args.fp16, int8=args.int8, calibration=args.calibration,
                               calibration_count=args.calibration_images or DEFAULT_CALIBRATION_IMAGES,
                               calibration_method=args.calibration_method, check=args.check,
                               image_size=args.image_size)
    print(result.summary())
    return 0


def add_predict(verbs: Any) -> None:
    p = verbs.add_parser("predict", help="run an exported model on images (no torch needed)")
    p.add_argument("model", help="model.onnx from `vision-tasks export`")
    p.add_argument("source", help="an image, a folder (recursive), a quoted glob, or a .txt list; "
                                  "a video, a folder of videos, a stream URL (rtsp://...) or "
                                  "camera:N")
    p.add_argument("--out", required=True, help="folder for predictions.jsonl, errors.jsonl, images/")
    p.add_argument("--batch-size", type=_positive, default=32)
    _device(p, "auto")
    p.add_argument("--workers", type=_positive, default=None,
                   help="decoding threads (default: cores, 2..8)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="onnxruntime CPU threads (default: the usable cores)")
    _lanes(p)
    p.add_argument("--save-images", action="store_true", help="draw the results into OUT/images/")
    p.add_argument("--score-threshold", type=_fraction, default=None,
                   help="detect/segment: leave out detections scoring below this (default 0.25, "
                        "vision_tasks.contract.DEFAULT_SCORE_THRESHOLD; 0 keeps all the graph "
                        "returns, as a COCO mAP of coco_results.json needs)")
    _reduced_decode(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="skip images already done in OUT (predicted, or failed: a failed "
                                            "image is tried again only with --retry-errors)")
    group.add_argument("--overwrite", action="store_true",
                       help="discard earlier results in OUT: its JSONL files and the drawings, "
                            "videos and tracks its run.json lists (other files stay)")
    p.add_argument("--retry-errors", action="store_true",
                   help="with --resume: predict the sources of OUT/errors.jsonl again (fixed "
                        "ones leave it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine(p)
    video = p.add_argument_group("videos and streams")
    video.add_argument("--vid-stride", type=_positive, default=1, metavar="N",
                       help="predict every N-th frame (default 1)")
    video.add_argument("--save-video", action="store_true",
                       help="draw the results into OUT/videos/<name>.mp4 at the source's rate")
    video.add_argument("--track", action="store_true",
                       help="detect/segment: follow objects across frames (ByteTrack): track_id "
                            "in the lines and drawings, OUT/mot/<name>.txt")
    video.add_argument("--reconnects", type=_non_negative, default=3, metavar="N",
                       help="times a dropped stream or camera is reopened (default 3)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from vision_tasks.locks import hold_output

    # one run per --out (images, videos, --resume, Ray); drawings mirror the source's folders
    with hold_output(args.out, sweep_depth=64):
        return _predict(args)


def _outside_out(paths: list[str], args: argparse.Namespace) -> list[str]:
    """``paths`` less those inside the ``--out`` folder (an --out inside the source folder:
    its drawings and videos are not input); an error when nothing is left."""
    import os

    roots = tuple({os.path.realpath(args.out) + os.sep, os.path.abspath(args.out) + os.sep})
    if os.path.isdir(args.source) and not any(
            r.startswith(os.path.realpath(args.source) + os.sep) for r in roots):
        return paths  # --out is not inside the folder walked: no path to look at
    kept = [p for p in paths if "://" in p or not (os.path.abspath(p).startswith(roots)
                                                   or os.path.realpath(p).startswith(roots))]
    if paths and not kept:
        raise VisionTasksError(f"{args.source}: all its files are inside --out {args.out}; "
                               "choose an --out outside what you predict")
    return kept


def _predict(args: argparse.Namespace) -> int:
    from vision_tasks.contract import DEFAULT_SCORE_THRESHOLD

    from .runtime import Predictor
    from .runtime.batch import run_predict
    from .runtime.sources import find_sources
    from .runtime.video_cli import check_image_flags, find_videos, predict_videos

    if args.retry_errors and not args.resume:
        raise VisionTasksError("--retry-errors tries again the failures of an earlier run in "
                               "--out: add --resume")
    ray = _ray_options(args)  # on Ray, this process's model only checks and names the run
    videos = find_videos(args.source)
    if videos is not None:
        return predict_videos(args, _outside_out(videos, args), ray)
    check_image_flags(args)
    found = find_sources(args.source)
    sources = _outside_out(found.files, args)
    for note in found.skipped:
        print(f"predict: skipped {note}", file=sys.stderr)
    predictor = Predictor(args.model, device="cpu" if ray else args.device,
                          threads=1 if ray else args.threads,
                          batch_size=args.batch_size, reduced_decode=args.reduced_decode,
                          lanes=None if ray else args.lanes,
                          score_threshold=(DEFAULT_SCORE_THRESHOLD if args.score_threshold is None
                                           else args.score_threshold))
    note = f" ({predictor.provider_note})" if predictor.provider_note else ""
    where = (f"on Ray ({args.address or 'local'})" if ray else f"on {predictor.provider}{note}")
    print(f"predict: {len(sources)} images with {predictor.path.name} ({predictor.task}) {where}",
          file=sys.stderr)
    try:
        if ray:
            from .runtime.ray_engine import run_predict_ray

            summary = run_predict_ray(predictor, sources, args.out, ray,
                                      save_images=args.save_images, resume=args.resume,
                                      overwrite=args.overwrite, progress=not args.quiet,
                                      retry_errors=args.retry_errors)
        else:
            summary = run_predict(predictor, sources, args.out, workers=args.workers,
                                  save_images=args.save_images, resume=args.resume,
                                  overwrite=args.overwrite, progress=not args.quiet,
                                  retry_errors=args.retry_errors)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished images are in {args.out}; continue with the same "
              "command plus --resume", file=sys.stderr)
        return 130
    skipped = (f", {summary.skipped} skipped (done before" + (
        f"; {summary.failed_before} of them failed before: add --retry-errors to try them "
        "again" if summary.failed_before else "") + ")" if summary.skipped else "")
    print(f"predicted {_count(summary.predicted, 'image')}, {_count(summary.errors, 'error')}{skipped} in "
          f"{summary.seconds:.1f} s ({summary.images_per_s:.1f} images/s)")
    print(f"  predictions: {summary.predictions_path}")
    if summary.errors:
        print(f"  errors:      {summary.errors_path}")
    if summary.coco_results is not None:
        print(f"  coco:        {summary.coco_results}")
    if args.save_images:
        print(f"  drawings:    {summary.out / 'images'}")
    if summary.errors and not summary.predicted:
        print(f"error: none of the {_count(summary.errors, 'image')} of this run could be "
              f"predicted; the reasons are in {summary.errors_path}", file=sys.stderr)
        return 2
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def add_benchmark(verbs: Any) -> None:
    p = verbs.add_parser("benchmark", help="images/s: onnxruntime vs PyTorch, pipeline vs model")
    p.add_argument("model", help="model.onnx")
    p.add_argument("--checkpoint", help="the checkpoint it came from, to measure PyTorch eager too")
    p.add_argument("--batch-size", type=_positive, default=32)
    _device(p, "cpu")
    p.add_argument("--threads", type=_positive, default=None,
                   help="CPU threads for both runtimes (default: the usable cores)")
    p.add_argument("--workers", type=_positive, default=None, help="decoding threads of the pipeline")
    _lanes(p)
    p.add_argument("--images", help="image folder / glob / list for the pipeline "
                                    "(default: data.val of the model, else synthetic JPEGs)")
    p.add_argument("--pipeline-images", type=_positive, default=2048,
                   help="images per pipeline pass (files repeat if fewer; default 2048)")
    _reduced_decode(p)
    p.add_argument("--repeats", type=_positive, default=5, help="timed repeats (median; default 5)")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per model repeat")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmark

    if args.seconds < 0:
        raise VisionTasksError(f"--seconds must be 0 or more, got {args.seconds}")
    report = run_benchmark(args.model, args.checkpoint, batch_size=args.batch_size,
                           device=args.device, threads=args.threads, workers=args.workers,
                           images=args.images, pipeline_count=args.pipeline_images,
                           repeats=args.repeats, min_seconds=args.seconds,
                           reduced_decode=args.reduced_decode, lanes=args.lanes)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0
