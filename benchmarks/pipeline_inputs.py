"""What the pipeline studies (``decode_ab.py``, ``pipeline_budget.py``) run on: one exported
model on the CPU and a pass of image files, from the same command-line arguments.

Imported by those scripts as a sibling module (run them from the repository root, as
``.venv/bin/python benchmarks/NAME.py``: Python puts ``benchmarks/`` on the path).
"""

from __future__ import annotations

import argparse

from vision_tasks.export.benchmark import repeat_to
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.sources import resolve_sources


def parser(description: str, count: int) -> argparse.ArgumentParser:
    """``MODEL IMAGES [--count N] [--rounds 7] [--batch-size 32]``; a script adds its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("model")
    p.add_argument("images", help="image folder / glob / list")
    p.add_argument("--count", type=int, default=count, help=f"files per pass (default {count})")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=32)
    return p


def predictor_and_files(args: argparse.Namespace) -> tuple[Predictor, list[str]]:
    """The model on the CPU with ``--batch-size``, and ``IMAGES`` repeated to ``--count``."""
    predictor = Predictor(args.model, device="cpu", batch_size=args.batch_size)
    return predictor, repeat_to(resolve_sources(args.images), args.count)
