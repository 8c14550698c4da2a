"""The batch job behind ``vision-tasks predict``: many files in, JSONL (and drawings) out.

``OUT/predictions.jsonl`` gets one line per image (:meth:`Prediction.to_dict`), written and
flushed as results arrive, so an interrupted run keeps every finished line;
``OUT/errors.jsonl`` gets ``{"source", "error"}`` for each file that could not be read or
decoded, and the run carries on. ``resume=True`` skips sources already in either file (those
of ``errors.jsonl`` are tried again with ``retry_errors=True``), and only continues a folder
written by the same model and settings (``OUT/run.json``, see
:mod:`vision_tasks.export.runtime.run_record`); ``overwrite=True`` deletes only what an earlier
run of ours wrote (:mod:`vision_tasks.export.runtime.earlier_run`). A file name that is not valid UTF-8 is written
with ``\\xNN`` for each undecodable byte (:func:`json_text`). Drawings (``OUT/images/``) decode
their image again, so memory does not grow with the image size times the images in flight.
Box and mask tasks also get ``OUT/coco_results.json`` (a multi-head model: one
``OUT/coco_results.<head>.json`` per box head) (see :mod:`vision_tasks.export.runtime.coco`).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vision_tasks.errors import OutputExistsError, OutputWriteError
from vision_tasks.fileio import atomic_write_bytes
from vision_tasks.imaging import ImageError, load_image
from vision_tasks.results import Prediction, json_line

from .coco import write_coco_results
from .draw import save_drawing
from .earlier_run import (
    carry_lists,
    drawing_path,
    drawn_file,
    first_foreign_drawing,
    remove_earlier_outputs,
    string_list,
)
from .pipeline import Outcome, predict_stream
from .predictor import Predictor
from .run_record import RUN_RECORD, check_resume, model_record, read_record, write_record

PREDICTIONS = "predictions.jsonl"
ERRORS = "errors.jsonl"
COCO_RESULTS = "coco_results.json"
IMAGES = "images"
DRAWINGS_QUEUED = 8  # drawings waiting for a drawing thread (each holds a prediction only)


@dataclass
class PredictSummary:
    """What a run did; ``skipped`` counts sources already done before a ``--resume``, and
    ``failed_before`` those of them that had failed (not tried again without ``--retry-errors``)."""

    out: Path
    predicted: int
    errors: int
    skipped: int
    seconds: float
    coco_results: Path | None = None
    failed_before: int = 0

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
            source = json.loads(line)["source"]
        except (ValueError, KeyError, TypeError):
            continue  # a damaged line: that source is simply predicted again
        if isinstance(source, str):
            done.add(source)
    return done


def json_text(text: str) -> str:
    """``text`` as JSON can carry it: unchanged when it is valid Unicode; a file name whose
    bytes are not UTF-8 (``os.fsdecode`` reads each such byte as a lone surrogate) gets
    ``\\xNN`` for each of those bytes (``caf\\xe9.jpg``), the same every time, so
    ``--resume`` recognises it."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _check_out(out: Path, resume: bool, overwrite: bool, record: dict
               ) -> tuple[set[str], set[str]]:
    """Prepare ``out`` for a run of the model ``record`` describes; returns the sources
    already predicted and those that failed (``resume``; empty sets otherwise).

    ``overwrite`` deletes the JSONL files, ``run.json``, the COCO results and only the
    drawings, videos and MOT files that the earlier run's ``run.json`` lists
    (:mod:`.earlier_run`); ``resume`` deletes nothing."""
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: is a file, not a folder; pass --out a folder "
                                "(it is made if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputWriteError(f"{out}: cannot make the output folder ({err.strerror or err}); "
                               "pass --out a folder you can write to") from None
    files = [out / PREDICTIONS, out / ERRORS]
    drawings = out / IMAGES
    existing = [f for f in files if f.is_file() and f.stat().st_size > 0]
    if drawings.is_dir() and any(drawings.iterdir()):
        existing.append(drawings)
    if resume:
        check_resume(out, record)
        write_record(out, carry_lists(read_record(out), record))
        return read_done(files[0]), read_done(files[1])
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} already exists; pass --resume to skip the images "
                                "done there, or --overwrite to start again")
    note = remove_earlier_outputs(out, read_record(out), *files)
    if note:
        print(note, file=sys.stderr)
    for f in [*files, out / RUN_RECORD]:
        f.unlink(missing_ok=True)
    write_record(out, carry_lists(None, record))
    return set(), set()


def drop_error_lines(path: Path, sources: set[str]) -> None:
    """Rewrite ``path`` (``errors.jsonl``) atomically without the lines of ``sources`` (to be
    tried again: those that fail again get a fresh line), each other source's first line once."""
    if not sources or not path.is_file():
        return
    kept, seen = [], set()
    with open(path, "rb") as f:
        for line in f:
            try:
                source = json.loads(line)["source"]
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line: its source is predicted again anyway
            if isinstance(source, str) and source not in sources and source not in seen:
                seen.add(source)
                kept.append(line if line.endswith(b"\n") else line + b"\n")
    atomic_write_bytes(path, b"".join(kept))


def _common_root(sources: list[str]) -> str:
    try:
        return os.path.commonpath([os.path.dirname(os.path.abspath(s)) for s in sources])
    except ValueError:  # different drives on Windows, or no source
        return ""


def _cannot_write(path: Path | str, err: OSError, done: int) -> OutputWriteError:
    return OutputWriteError(f"{path}: cannot write ({err.strerror or err}); free some disk space "
                            "(or pass another --out), then run the same command with --resume: "
                            f"the {done} images done so far are kept")


class _Writer:
    """Appends lines to the two JSONL files and flushes each, so nothing finished is lost."""

    def __init__(self, out: Path) -> None:
        self.paths = {"predictions": out / PREDICTIONS, "errors": out / ERRORS}
        self.files: dict[str, IO[bytes]] = {}
        self.done = 0
        try:
            for key, path in self.paths.items():
                self.files[key] = open(path, "ab")
        except OSError as err:
            self.close(quiet=True)
            raise _cannot_write(self.paths[key], err, 0) from None

    def write(self, outcome: Outcome) -> None:
        if outcome.prediction is not None:
            key, record = "predictions", outcome.prediction.to_dict()
            record["source"] = json_text(record["source"])
        else:
            key = "errors"
            record = {"source": json_text(outcome.source), "error": json_text(outcome.error or "")}
        try:
            self.files[key].write(json_line(record))
            self.files[key].flush()
        except OSError as err:
            raise _cannot_write(self.paths[key], err, self.done) from None
        self.done += 1

    def close(self, quiet: bool = False) -> None:
        """Close both files; ``quiet``: after an error, whose message says it all (a buffer
        that cannot be written now only holds a torn line, which ``--resume`` cuts off)."""
        for key, f in self.files.items():
            try:
                f.close()
            except OSError as err:
                if not quiet:
                    raise _cannot_write(self.paths[key], err, self.done) from None


def _draw(source: str, prediction: Prediction, path: Path) -> Path | None:
    """Decode ``source`` again and draw ``prediction`` on it into ``path``: a full-size image
    is held only while it is drawn (one per drawing thread), not for every image in flight."""
    try:
        image = load_image(source)
    except ImageError as err:  # the file changed since it was predicted
        warnings.warn(f"no drawing: {err}", stacklevel=1)
        return None
    try:
        return save_drawing(image, prediction, path)
    except OSError as err:
        raise OutputWriteError(f"{path}: cannot write the drawing ({err.strerror or err}); "
                               "free some disk space (or pass another --out), then run the same "
                               "command with --resume") from None


def run_predict(predictor: Predictor, sources: list[str], out: str | os.PathLike,
                workers: int | None = None, save_images: bool = False, resume: bool = False,
                overwrite: bool = False, progress: bool = True,
                stream: Callable[[list[str]], Iterator[Outcome]] | None = None,
                retry_errors: bool = False) -> PredictSummary:
    """Predict every source into ``out`` (see the module docstring for the files written).

    ``retry_errors`` (with ``resume``): the sources in ``errors.jsonl`` are predicted again;
    those that succeed leave it, those that fail again stay (one line each).

    ``stream``: another engine, which turns the sources to do into their outcomes in the same
    order (:mod:`vision_tasks.export.runtime.ray_engine`); default: this machine's
    :func:`~vision_tasks.export.runtime.pipeline.predict_stream` of ``predictor``.

    Raises:
        OutputExistsError: ``out`` is a file, or already holds results and neither ``resume``
            nor ``overwrite`` says what to do with them, or ``resume`` meets the results of
            another model or other settings.
        OutputWriteError: a file of ``out`` cannot be written (a full disk...); what is
            written stays, and ``resume`` continues.
    """
    from tqdm import tqdm

    out = Path(out)
    root = _common_root(sources) if save_images else ""
    record = {**model_record(predictor), "drawing_roots": [root] if save_images else []}
    earlier_roots = string_list(read_record(out), "drawing_roots") if resume else None
    done, failed = _check_out(out, resume, overwrite, record)
    names = {json_text(s) for s in sources}
    if retry_errors:
        drop_error_lines(out / ERRORS, (failed & names) - done)
        failed -= names
    todo = [s for s in sources if json_text(s) not in done | failed]
    foreign = first_foreign_drawing(out, todo, root) if resume and save_images else None
    if foreign is not None:
        raise OutputExistsError(f"{foreign}: not a drawing of the run in {out}, and --resume "
                                "replaces no other file; move it away, or pass --overwrite to "
                                "start again")
    # Drawings are made after their line is written: a run killed in between leaves a done
    # image undrawn. --resume --save-images draws those again (same layout as before only).
    redraw = ([s for s in sources if json_text(s) in done
               and not drawn_file(drawing_path(out, s, root)).exists()]
              if save_images and stream is None and earlier_roots and root in earlier_roots else [])
    redrawn = set(redraw)
    counts = {"predicted": 0, "errors": 0}
    writer = _Writer(out)
    drawings: deque[Future[Path | None]] = deque()
    t0 = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="draw") as draw_pool, \
                tqdm(total=len(todo), unit="img", desc="predict", disable=not progress,
                     dynamic_ncols=True) as bar:
            outcomes: Iterator[Outcome] = (stream(todo) if stream is not None else
                                           predict_stream(predictor, [*todo, *redraw],
                                                          workers=workers))
            for outcome in outcomes:
                if outcome.source in redrawn:  # done before: its drawing only, no second line
                    redrawn.discard(outcome.source)
                    if outcome.prediction is not None:
                        draw_pool.submit(_draw, outcome.source, outcome.prediction,
                                         drawing_path(out, outcome.source, root)).result()
                    continue
                writer.write(outcome)
                counts["predicted" if outcome.prediction is not None else "errors"] += 1
                if save_images and outcome.prediction is not None:
                    drawings.append(draw_pool.submit(
                        _draw, outcome.source, outcome.prediction,
                        drawing_path(out, outcome.source, root)))
                    while len(drawings) > DRAWINGS_QUEUED or (drawings and drawings[0].done()):
                        drawings.popleft().result()
                bar.update(1)
                if counts["errors"]:
                    bar.set_postfix(errors=counts["errors"], refresh=False)
            for pending in drawings:
                pending.result()
    except BaseException:
        writer.close(quiet=True)
        raise
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
                          seconds, coco, len((failed & names) - done))
