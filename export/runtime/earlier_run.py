"""What ``predict --overwrite`` may delete: only the files an earlier run of ours wrote.

An earlier run is known by ``OUT/run.json`` (:mod:`.run_record`): ``drawing_roots`` (the folders
that ``--save-images`` laid its drawings out under: a source's drawing is
``OUT/images/<source relative to the root>``, found again from the sources of
``predictions.jsonl``) and ``outputs`` (the videos and MOT files a video run wrote, paths
relative to ``OUT``, listed before each was made). Those files go; every other file in
``OUT/images``, ``OUT/videos`` and ``OUT/mot`` stays, and a folder left empty by the deletions
goes. A folder of an older version, whose ``run.json`` lists nothing, keeps all its files: the
new run replaces only the files of the same name it writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .draw import WRITABLE_SUFFIXES

IMAGES = "images"
VIDEOS = "videos"
MOT = "mot"
COCO_RESULTS = "coco_results.json"
LISTS = ("drawing_roots", "outputs")
"""The keys of ``run.json`` that list what a run wrote (kept, and grown, by ``--resume``)."""


def drawing_path(out: Path, source: str, root: str) -> Path:
    """Where ``--save-images`` draws ``source`` (before :func:`~.draw.save_drawing` may add
    ``.png``): its path below ``root`` (the sources' common folder; ``""``: its name only)."""
    absolute = os.path.abspath(source)
    relative = os.path.relpath(absolute, root) if root else os.path.basename(absolute)
    return out / IMAGES / relative


def drawn_file(path: Path) -> Path:
    """The file :func:`~.draw.save_drawing` writes for ``path`` (``.png`` added to a suffix
    OpenCV cannot write)."""
    return path if path.suffix.lower() in WRITABLE_SUFFIXES else path.with_name(path.name + ".png")


def first_foreign_drawing(out: Path, sources: Iterable[str], root: str) -> Path | None:
    """The first drawing of ``sources`` (not done before: ``--resume``) whose file is there
    already: not an earlier drawing of theirs, so not ours to replace."""
    for source in sources:
        path = drawn_file(drawing_path(out, source, root))
        if path.exists() or path.is_symlink():
            return path
    return None


def string_list(record: dict[str, Any] | None, key: str) -> list[str] | None:
    """``record[key]`` when it is a list of strings; ``None`` when absent or of another shape."""
    value = record.get(key) if isinstance(record, dict) else None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def carry_lists(old: dict[str, Any] | None, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the earlier run's lists in front of its own (``--resume``: the files
    both runs wrote stay known), each entry once."""
    merged = dict(record)
    for key in LISTS:
        entries = [*(string_list(old, key) or []), *(record.get(key) or [])]
        merged[key] = list(dict.fromkeys(entries))
    return merged


def _sources(path: Path) -> Iterable[str]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                source = json.loads(line)["source"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(source, str):
                yield source


def _inside(path: Path, folder: Path) -> bool:
    """``path`` lies below ``folder`` by its written form (no ``..`` escape)."""
    normal = os.path.normpath(path)
    return normal.startswith(os.path.normpath(folder) + os.sep)


def _delete(path: Path, top: Path, removed: list[Path]) -> None:
    """Unlink ``path`` if it lies below ``top`` both as written and once links are followed
    (a link among its folders never leads a deletion out of ``OUT``)."""
    if not _inside(path, top) or not (path.is_file() or path.is_symlink()):
        return
    parent, real_top = os.path.realpath(path.parent), os.path.realpath(top)
    if top.is_symlink() or not (parent == real_top or parent.startswith(real_top + os.sep)):
        return
    path.unlink(missing_ok=True)
    removed.append(path)


def _prune(removed: list[Path], tops: list[Path]) -> None:
    """Remove the folders that the deletions left empty, up to and including each top."""
    for path in removed:
        folder = path.parent
        top = next((t for t in tops if folder == t or _inside(folder, t)), None)
        while top is not None and (folder == top or _inside(folder, top)):
            try:
                folder.rmdir()  # only an empty folder goes
            except OSError:
                break
            folder = folder.parent


def remove_earlier_outputs(out: Path, old: dict[str, Any] | None, predictions: Path,
                           errors: Path) -> str | None:
    """Delete the files the run of ``old`` (its ``run.json``; ``None``: none) wrote in
    ``out`` beside the JSONL files; returns a one-line note when folders of ours hold files
    an older record does not list (they are kept)."""
    tops = [out / IMAGES, out / VIDEOS, out / MOT]
    roots, outputs = string_list(old, "drawing_roots"), string_list(old, "outputs")
    if roots is None and outputs is None:
        held = [t for t in tops if t.is_dir() and any(t.iterdir())]
        if held:
            return (f"predict: {held[0]} holds files that no record of ours lists (an older "
                    "version's run, or yours): nothing in it is deleted; this run replaces only "
                    "the files of the same name it writes")
        return None
    removed: list[Path] = []
    if roots:
        for source in dict.fromkeys([*_sources(predictions), *_sources(errors)]):
            for root in roots:
                _delete(drawn_file(drawing_path(out, source, root)), tops[0], removed)
    for relative in outputs or []:
        path = out / relative
        if not os.path.isabs(relative) and any(_inside(path, t) for t in tops[1:]):
            _delete(path, out, removed)
    for coco in [out / COCO_RESULTS, *out.glob("coco_results.*.json")]:
        _delete(coco, out, removed)
    _prune(removed, tops)
    return None
