"""``OUT/run.json``: which model and settings wrote a ``predict`` folder, so that ``--resume``
never appends one model's lines to another's.

The record holds the model file's SHA-256, its task, classes, input size and thresholds, and
the settings that change results (``score_threshold``, ``reduced_decode``). ``--resume``
continues only when they all match; the model's path is kept for people, not compared (a
model moved or copied is the same model). It also lists what the run wrote beside the JSONL
files (``drawing_roots``, ``outputs``: see :mod:`.earlier_run`), so that ``--overwrite``
deletes only those files; they are not compared either.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vision_tasks.errors import OutputExistsError
from vision_tasks.fileio import atomic_write_text

from .earlier_run import LISTS
from .predictor import Predictor

RUN_RECORD = "run.json"
_NOT_COMPARED = ("model", *LISTS)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_record(predictor: Predictor) -> dict[str, Any]:
    """What identifies ``predictor``'s results: model file, task, classes, thresholds."""
    meta = predictor.metadata
    return {"model": str(predictor.path), "model_sha256": file_sha256(predictor.path),
            "task": meta.task, "class_names": list(meta.class_names),
            "input_size": list(meta.input_size), "thresholds": dict(meta.thresholds),
            "score_threshold": predictor.score_threshold,
            "reduced_decode": predictor.reduced_decode}


def check_resume(out: Path, record: dict[str, Any]) -> None:
    """Refuse to resume ``out`` when its record names another model or other settings
    (a folder without a record, from an older version, is taken as it is).

    Raises:
        OutputExistsError: one line naming what differs.
    """
    path = out / RUN_RECORD
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as err:
        old = err
    if not isinstance(old, dict) or not isinstance(old.get("model_sha256", ""), str):
        why = (f"unreadable ({getattr(old, 'strerror', None) or old})"
               if isinstance(old, Exception) else "not a record of vision-tasks predict")
        raise OutputExistsError(f"{path}: {why}; --resume cannot tell which model wrote {out}: "
                                "pass another --out, or --overwrite to start again")
    differs = [key for key in record if key not in _NOT_COMPARED and old.get(key) != record[key]]
    if not differs:
        return
    what = ", ".join("the model file (another SHA-256)" if key == "model_sha256"
                     else f"{key} ({_short(old.get(key))} -> {_short(record[key])})"
                     for key in differs)
    raise OutputExistsError(f"{out} holds predictions of {old.get('model', 'another model')} and "
                            f"this run differs in {what}; --resume continues only the same model "
                            "and settings: pass another --out, or --overwrite to start again")


def read_record(out: Path) -> dict[str, Any] | None:
    """``OUT/run.json`` as written, or ``None`` when it is missing, unreadable or not an object
    (then nothing is known about what an earlier run wrote)."""
    try:
        old = json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) else None


def write_record(out: Path, record: dict[str, Any]) -> None:
    atomic_write_text(out / RUN_RECORD, json.dumps(record, indent=2) + "\n")


def add_outputs(out: Path, relative: list[str]) -> None:
    """List ``relative`` (paths below ``out``) in ``OUT/run.json``'s ``outputs`` before they are
    written, so that a later ``--overwrite`` knows them as this run's even if it is killed."""
    record = read_record(out) or {}
    listed = record.get("outputs") if isinstance(record.get("outputs"), list) else []
    new = [r for r in relative if r not in listed]
    if new:
        write_record(out, {**record, "outputs": [*listed, *new]})


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
