"""The ``vision-tasks`` command line: one entry point, one verb per job.

Built-in verbs: ``data synth``, ``train``, ``val``, ``compose``, ``demo``, ``summary``, ``filters``, ``track-eval``. Packages add verbs
through the ``vision_tasks.commands`` entry-point group (a function that receives
the sub-parser collection), and model formats that ``val`` understands through
``vision_tasks.evaluators`` (file suffix -> function), so the core never imports
them by name.

This module imports without torch: the base install (``pip install vision-tasks``) is the
torch-free runtime (``predict``, ``benchmark MODEL.onnx``). A verb that needs the ``train``
extra (or ``predict --engine ray`` the ``ray`` extra), run without it, fails in ``main`` with
one line naming the extra (``vision_tasks.cli_errors.EXTRAS``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from pathlib import Path

from vision_tasks import __version__, plugins
from vision_tasks.cli_errors import (
    OneLineParser,
    positive,
    run_verb,
)
from vision_tasks.configs import resolve as resolve_config
from vision_tasks.errors import VisionTasksError
from vision_tasks.locks import OUT_LOCKED_ENV, hold_output
from vision_tasks.output_checks import (
    check_compose_out,
    check_convert_out,
    check_synth_args,
    check_synth_out,
)
from vision_tasks.warning_lines import one_line_warnings


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.lr=0.01 (repeatable)")


def cmd_data_synth(args: argparse.Namespace) -> int:
    check_synth_args(args.train, args.val, args.size, args.frames)
    with hold_output(args.out, option="OUT", sigterm=True):
        check_synth_out(Path(args.out), args.overwrite)
        return _data_synth(args)


def _data_synth(args: argparse.Namespace) -> int:
    from vision_tasks.task_api import get_task

    if args.task == "track":  # videos with ground-truth ids, not a task's layout
        return _synth_track(args)
    task = get_task(args.task)
    size = args.size if args.size is not None else task.synth_size
    style = {} if args.style == "default" else {"style": args.style}  # plug-ins may lack it
    summary = task.synthesize(Path(args.out), 1000 if args.train is None else args.train,
                              200 if args.val is None else args.val, size, args.seed, **style)
    splits = ", ".join(f"{name} {info['images']}" for name, info in summary["splits"].items())
    print(f"wrote synthetic {args.task} set ({summary['layout']}, {args.style} style, {size} px, "
          f"seed {args.seed}): "
          f"{splits} images in {args.out}")
    return 0


def _synth_track(args: argparse.Namespace) -> int:
    from vision_tasks.data.synth_track import DEFAULT_SIZE, write_track

    summary = write_track(Path(args.out), 8 if args.train is None else args.train,
                          4 if args.val is None else args.val, args.size or DEFAULT_SIZE,
                          args.seed, args.frames)
    splits = ", ".join(f"{name} {info['sequences']} ({info['boxes']} boxes)"
                       for name, info in summary["splits"].items())
    print(f"wrote synthetic tracking videos ({summary['frames']} frames, {summary['size']} px, "
          f"seed {args.seed}): {splits} in {args.out} (videos/, mot/, and the frames as COCO "
          "train/ and val/)")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    with hold_output(args.out, option="OUT", sigterm=True):
        check_convert_out(Path(args.out), args.overwrite)
        return _data_convert(args)


def _data_convert(args: argparse.Namespace) -> int:
    from vision_tasks.data.yolo_convert import coco_to_yolo, yolo_to_coco

    src = Path(args.src)
    if src.suffix in (".yaml", ".yml"):
        summary = yolo_to_coco(src, args.out)
        for split, info in summary["splits"].items():
            for problem in info["problems"]:
                print(f"left out: {problem}", file=sys.stderr)
            print(f"{split}: {info['images']} images, {info['objects']} objects, "
                  f"{len(info['problems'])} bad labels -> {Path(args.out) / split}")
    else:
        summary = coco_to_yolo(src, args.out, segments=args.segments)
        for split, info in summary["splits"].items():
            print(f"{split}: {info['images']} images, {info['objects']} objects "
                  f"({info['left_out']} crowd regions or missing images left out)")
        print(f"wrote {summary['data_yaml']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        with hold_output(args.out):  # this process lives as long as its torchrun
            os.environ[OUT_LOCKED_ENV] = str(Path(args.out).resolve())
            return _torchrun(args.nproc, args.argv)
    if os.environ.get("RANK", "0") != "0" \
            or os.environ.get(OUT_LOCKED_ENV) == str(Path(args.out).resolve()):
        return _train(args)  # rank 0 (or the --nproc process above) holds the lock
    with hold_output(args.out):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from vision_tasks.config import load_config
    from vision_tasks.engine.trainer import Trainer

    if args.resume and args.overrides:
        raise VisionTasksError("--resume continues the run with its saved config; drop --set")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise VisionTasksError(f"{args.out}: is a file, not a folder; pass --out a run folder "
                               "(it is made if missing)")
    cfg = None if args.resume else load_config(resolve_config(_require_config(args)), args.overrides)
    if args.resume and args.overwrite:
        raise VisionTasksError("--resume continues the run in --out and --overwrite starts "
                               "again: pass one of them")
    trainer = Trainer(cfg, args.out, resume=args.resume, progress=not args.quiet,
                      overwrite=args.overwrite)
    if args.resume:
        from vision_tasks.resume_config import check_resume_config

        check_resume_config(trainer.cfg, args.out,
                            resolve_config(args.config) if args.config else None)
    try:
        result = trainer.fit()
    except KeyboardInterrupt:
        if not trainer.last_path.is_file():  # stopped before the first epoch was saved
            print("\ninterrupted before the first epoch finished: nothing was saved; start the "
                  "run again (without --resume)", file=sys.stderr)
            return 130
        print(f"\ninterrupted: finished epochs are in {trainer.last_path}; continue with "
              f"`vision-tasks train --out {args.out} --resume`", file=sys.stderr)
        return 130
    if os.environ.get("RANK", "0") != "0":  # under torchrun, process 0 reports
        return 0
    print(f"done in {result.seconds:.0f} s: best {result.primary_metric} {result.best_metric:.4f}; "
          f"weights in {result.best.parent}, metrics in {result.run_dir / 'metrics.csv'}")
    return 0


def _torchrun(nproc: int, argv: list[str]) -> int:
    """This same ``train`` command on ``nproc`` processes of this machine, under torchrun."""
    rest, skip = [], False
    for arg in argv:  # the command without --nproc (each process is one of the N)
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "vision_tasks", *rest]
    print(f"train: {nproc} processes: {' '.join(command[1:])}", file=sys.stderr)
    return subprocess.call(command)


def _require_config(args: argparse.Namespace) -> str:
    if args.config is None:
        raise VisionTasksError("train: give a CONFIG file or a ready config's name (detect, ...), "
                               "or --resume with --out RUN")
    return args.config


def cmd_val(args: argparse.Namespace) -> int:
    from vision_tasks.engine.validate import validate_model

    with hold_output(args.out) if args.out else contextlib.nullcontext():
        metrics, out = validate_model(args.model, args.overrides, out_dir=args.out,
                                      batch_size=args.batch_size, device=args.device,
                                      progress=not args.quiet, evaluators=_evaluators(),
                                      overwrite=args.overwrite)
    from vision_tasks.engine.evaluate import format_metrics

    print(format_metrics(metrics))
    print(f"metrics written to {out / 'metrics.json'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vision_tasks.demo import run_demo

    with hold_output(args.out):  # its export and predict lock their own outputs inside
        return run_demo(args, run_verb=lambda argv: main(argv))


def cmd_summary(args: argparse.Namespace) -> int:
    from vision_tasks.inspect.summary import format_summary, summarize_source

    size = tuple(args.input_size) if args.input_size else None
    print(format_summary(summarize_source(args.model, args.overrides, args.classes, size, args.depth)))
    return 0


def cmd_compose(args: argparse.Namespace) -> int:
    from vision_tasks.engine.compose import compose_checkpoints

    names = [n.strip() for n in args.names.split(",")] if args.names else None
    with hold_output(args.out, is_file=True):
        check_compose_out(Path(args.out), args.overwrite)
        print(compose_checkpoints(args.checkpoints, args.out, names).summary())
    return 0


def cmd_filters(args: argparse.Namespace) -> int:
    from vision_tasks.inspect.filters import draw_first_layer

    with hold_output(args.out):
        print("\n".join(draw_first_layer(args.checkpoint, args.image, args.out, args.overwrite).lines))
    return 0


def _depth_arg(text: str) -> int | str:
    if text in ("auto", "all") or (text.isdigit() and int(text) >= 0):
        return text if not text.isdigit() else int(text)
    raise argparse.ArgumentTypeError(f"expected auto, all or a number >= 0, got {text!r}")


def _evaluators() -> dict[str, object]:
    return plugins.plugins(plugins.EVALUATORS)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vision-tasks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vision-tasks {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    data = verbs.add_parser("data", help="make or inspect data sets")
    data_verbs = data.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    synth = data_verbs.add_parser("synth", help="write a deterministic synthetic shapes set")
    synth.add_argument("task", help="task whose layout to write (classify, ...), or track: "
                                    "videos with ground-truth ids (MOTChallenge)")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--train", type=int, default=None,
                       help="training images (default 1000; track: videos, default 8)")
    synth.add_argument("--val", type=int, default=None,
                       help="validation images (default 200; track: videos, default 4)")
    synth.add_argument("--frames", type=int, default=48, help="track: frames per video (default 48)")
    synth.add_argument("--size", type=int, default=None,
                       help="image side in pixels (default: the task's, 64; detect 128)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--style", choices=("default", "hard"), default="default",
                       help="default: the shapes the ready configs were tuned on; hard: "
                            "look-alike classes, random colours, noise, blur, cut by the border")
    synth.add_argument("--overwrite", action="store_true",
                       help="write into a folder that holds files: replace the files synth "
                            "writes, keep all others (default: refuse)")
    synth.set_defaults(func=cmd_data_synth)
    convert = data_verbs.add_parser("convert", help="COCO json <-> YOLO (Ultralytics) layout")
    convert.add_argument("src", help="a YOLO data.yaml (-> COCO), or a folder of COCO splits "
                                     "<split>/images + <split>/annotations.json (-> YOLO)")
    convert.add_argument("out", help="output folder")
    convert.add_argument("--segments", action="store_true",
                         help="COCO -> YOLO: write object outlines as polygons (default: boxes)")
    convert.add_argument("--overwrite", action="store_true",
                         help="write into a folder that holds files: replace the files convert "
                              "writes, keep all others (default: refuse)")
    convert.set_defaults(func=cmd_data_convert)

    train = verbs.add_parser("train", help="train a model from a config")
    train.add_argument("config", nargs="?",
                       help="YAML config file, or a ready config's name: "
                            "classify, detect, segment, ... (not needed with --resume)")
    train.add_argument("--out", required=True, help="run folder (weights/, metrics.csv, ...)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--overwrite", action="store_true",
                       help="start again in an --out that holds a run (its weights and events "
                            "go) or files of the names train writes (replaced; others stay)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--nproc", type=positive, default=1, metavar="N",
                       help="train on N processes of this machine (DDP, started with torchrun; "
                            "one per GPU, or CPU processes with gloo); for several machines "
                            "run torchrun yourself (README)")
    _add_set(train)
    train.set_defaults(func=cmd_train)

    val = verbs.add_parser("val", help="evaluate a checkpoint (or exported model) on data.val")
    val.add_argument("model", help="checkpoint .pt (or a model file of a registered format)")
    val.add_argument("--out", help="folder for metrics.json and plots (default: beside the model)")
    val.add_argument("--batch-size", type=positive, default=None)
    val.add_argument("--device", default=None, help="auto | cpu | cuda")
    val.add_argument("--quiet", action="store_true")
    val.add_argument("--overwrite", action="store_true",
                     help="replace metrics.json and plots of those names in an --out that holds "
                          "no earlier val output (other files stay)")
    _add_set(val)
    val.set_defaults(func=cmd_val)

    demo = verbs.add_parser("demo", help="synthesize data, train, evaluate and show the results")
    demo.add_argument("--task", default="classify")
    demo.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo)")
    demo.add_argument("--quiet", action="store_true")
    _add_set(demo)
    demo.set_defaults(func=cmd_demo)

    summary = verbs.add_parser("summary", help="the course's parameter table of a model, layer by layer")
    summary.add_argument("model", metavar="CONFIG|CHECKPOINT", help="a YAML config or a checkpoint .pt")
    summary.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                         help="input height and width (default: data.image_size)")
    summary.add_argument("--classes", type=int, default=None,
                         help="output classes for a CONFIG (default 10); a checkpoint has its own")
    summary.add_argument("--depth", type=_depth_arg, default="auto",
                         help="rows: auto (default), all (every layer), or N (one row per "
                              "backbone block, opened N levels deep)")
    _add_set(summary)
    summary.set_defaults(func=cmd_summary)

    filters = verbs.add_parser("filters", help="draw the first conv layer's filters and its maps on an image")
    filters.add_argument("checkpoint", help="checkpoint .pt from vision-tasks train")
    filters.add_argument("image", help="image file; letterboxed to the model's input as in training")
    filters.add_argument("--out", required=True, help="folder for filters.png, activations.png, input.png")
    filters.add_argument("--overwrite", action="store_true",
                         help="replace files of those names that vision-tasks filters did not draw")
    filters.set_defaults(func=cmd_filters)

    compose = verbs.add_parser("compose", help="join single-task checkpoints with one backbone "
                                               "into one multi-head checkpoint")
    compose.add_argument("checkpoints", nargs="+", metavar="CKPT",
                         help="checkpoints whose backbones are bit-identical (heads trained with "
                              "model.backbone.freeze=all on the same pretrained weights)")
    compose.add_argument("--out", required=True, help="the multi-head checkpoint .pt")
    compose.add_argument("--overwrite", action="store_true",
                         help="replace an existing --out that is not a vision-tasks checkpoint "
                              "(default: refuse; a checkpoint is always replaced)")
    compose.add_argument("--names", help="head names, comma-separated, one per checkpoint "
                                         "(default: each checkpoint's task)")
    compose.set_defaults(func=cmd_compose)
    from vision_tasks.metrics.track_eval import add_track_eval  # numpy only

    add_track_eval(verbs)

    for ep in plugins.plugins(plugins.COMMANDS).values():
        ep.load()(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with one_line_warnings() if argv is None else contextlib.nullcontext():  # the real CLI
        return run_verb(args)


if __name__ == "__main__":
    sys.exit(main())
