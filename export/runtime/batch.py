"""The batch job behind ``vision-tasks predict``: many files in, JSONL (and drawings) out.

``OUT/predictions.jsonl`` gets one line per image (:meth:`Prediction.to_dict`), written and
flushed as results arrive, so an interrupted run keeps every finished line;
``OUT/errors.jsonl`` gets ``{"source", "error"}`` for each file that could not be read or
decoded, and the run carries on. ``resume=True`` skips sources already in either file.
Box and mask tasks also get ``OUT/coco_results.json`` (a multi-head model: one
``OUT/coco_results.<head>.json`` per box head) (see :mod:`vision_tasks.export.runtime.coco`).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vision_tasks.errors import OutputExistsError
from vision_tasks.results import json_line

from .coco import write_coco_results
from .draw import save_drawing
from .pipeline import Outcome, predict_stream
from .predictor import Predictor

PREDICTIONS = "predictions.jsonl"
ERRORS = "errors.jsonl"
COCO_RESULTS = "coco_results.json"
IMAGES = "images"


@dataclass
class PredictSummary:
    """What a run did; ``skipped`` counts sources already done before a ``--resume``."""

    out: Path
    predicted: int
    errors: int
    skipped: int
    seconds: float
    coco_results: Path | None = None

    @property
    def images_per_s(self) -> float:
        return (self.predicted + self.errors) / self.seconds if self.seconds > 0 else 0.0

    @property
    def predictions_path(self) -> Path:
        return self.out / PREDICTIONS

    @property
    def errors_path(self) -> Path:
        return self.out / ERRORS


def read_done(path: Path) -> set[str]:
    """Sources of the complete lines of a JSONL file; a torn last line (a run killed while
    writing) is cut off so that appending starts on a fresh line."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    done = set()
    for line in data[:end].decode("utf-8", errors="replace").splitlines():
        try:
            done.add(json.loads(line)["source"])
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line: that source is simply predicted again
    return done


def _check_out(out: Path, resume: bool, overwrite: bool) -> set[str]:
    files = [out / PREDICTIONS, out / ERRORS]
    existing = [f for f in files if f.is_file() and f.stat().st_size > 0]
    if resume:
        return read_done(files[0]) | read_done(files[1])
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} already exists; pass --resume to skip the images "
                                "done there, or --overwrite to start again")
    for f in files:
        f.unlink(missing_ok=True)
    return set()


def _drawing_path(out: Path, source: str, root: str) -> Path:
    absolute = os.path.abspath(source)
    relative = os.path.relpath(absolute, root) if root else os.path.basename(absolute)
    return out / IMAGES / relative


def _common_root(sources: list[str]) -> str:
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(s)) for s in sources])
    except ValueError:  # different drives on Windows
        return ""


class _Writer:
    """Appends lines to the two JSONL files and flushes each, so nothing finished is lost."""

    def __init__(self, out: Path) -> None:
        self.predictions: IO[bytes] = open(out / PREDICTIONS, "ab")
        self.errors: IO[bytes] = open(out / ERRORS, "ab")

    def write(self, outcome: Outcome) -> None:
        if outcome.prediction is not None:
            f, record = self.predictions, outcome.prediction.to_dict()
        else:
            f, record = self.errors, {"source": outcome.source, "error": outcome.error}
        f.write(json_line(record))
        f.flush()

    def close(self) -> None:
        self.predictions.close()
        self.errors.close()


def run_predict(predictor: Predictor, sources: list[str], out: str | os.PathLike,
                workers: int | None = None, save_images: bool = False, resume: bool = False,
                overwrite: bool = False, progress: bool = True) -> PredictSummary:
    """Predict every source into ``out`` (see the module docstring for the files written).

    Raises:
        OutputExistsError: ``out`` already holds results and neither ``resume`` nor
            ``overwrite`` says what to do with them.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = _check_out(out, resume, overwrite)
    todo = [s for s in sources if s not in done]
    root = _common_root(sources) if save_images else ""
    counts = {"predicted": 0, "errors": 0}
    writer = _Writer(out)
    drawings: deque[Future[Path]] = deque()
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="draw") as draw_pool, \
                tqdm(total=len(todo), unit="img", desc="predict", disable=not progress,
                     dynamic_ncols=True) as bar:
            stream: Iterator[Outcome] = predict_stream(predictor, todo, workers=workers,
                                                       keep_original=save_images)
            for outcome in stream:
                writer.write(outcome)
                counts["predicted" if outcome.prediction is not None else "errors"] += 1
                if save_images and outcome.prediction is not None:
                    drawings.append(draw_pool.submit(
                        save_drawing, outcome.original, outcome.prediction,
                        _drawing_path(out, outcome.source, root)))
                    while len(drawings) > 64 or (drawings and drawings[0].done()):
                        drawings.popleft().result()
                bar.update(1)
                if counts["errors"]:
                    bar.set_postfix(errors=counts["errors"], refresh=False)
            for pending in drawings:
                pending.result()
    finally:
        writer.close()
    seconds = time.perf_counter() - t0
    coco = None
    if predictor.spec is not None and predictor.spec.coco_results:
        coco = out / COCO_RESULTS
        write_coco_results(out / PREDICTIONS, coco, predictor.metadata)
    for name, spec in predictor.head_specs.items():  # a multi-head model: one file per box head
        if spec.coco_results:
            coco = out / COCO_RESULTS.replace(".json", f".{name}.json")
            write_coco_results(out / PREDICTIONS, coco, predictor.metadata.heads[name], head=name)
    return PredictSummary(out, counts["predicted"], counts["errors"], len(sources) - len(todo),
                          seconds, coco)
