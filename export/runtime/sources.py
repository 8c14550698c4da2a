"""What ``vision-tasks predict SOURCE`` means (one image, a folder, a glob or a list file),
and how each source is named in results and errors."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vision_tasks.contract import ModelFileError
from vision_tasks.imaging import IMAGE_SUFFIXES, ImageSource

"""File name endings a folder or glob is searched for (case-insensitive)."""


class SourceError(ModelFileError):
    """SOURCE names nothing to predict on."""


def source_name(source: ImageSource) -> str:
    """How a source is named in results and errors: the path, or ``<array>`` etc."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, np.ndarray):
        return "<array>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    label = getattr(source, "source_label", None)  # a video frame (runtime.video.Frame)
    return label if isinstance(label, str) else "<bytes>"


def _has_image_suffix(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


@dataclass
class Sources:
    """What SOURCE names: the image paths, and one line per folder left out of the walk
    (:func:`find_sources`)."""

    files: list[str]
    skipped: list[str] = field(default_factory=list)


def _folder(root: Path) -> Sources:
    """Image files below ``root``, following links to folders but walking each folder once
    (by device and inode), so a link loop or a second link to one folder adds nothing twice.
    Every file with an image suffix is kept, whatever it is (a FIFO, a link to a device):
    reading it fails with a one-line reason in errors.jsonl rather than vanishing."""
    found: list[str] = []
    skipped: list[str] = []
    walked: dict[tuple[int, int], str] = {}
    unlisted: list[str] = []  # folders that cannot be listed: kept as sources, so that each
    # gets its reason (permission denied, ...) in errors.jsonl instead of its images vanishing
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True,
                                                onerror=lambda err: unlisted.append(err.filename)):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        first = walked.setdefault((info.st_dev, info.st_ino), dirpath)
        if first != dirpath:
            dirnames[:] = []
            skipped.append(f"{dirpath} is {first} again (a link loop or a second link to it); "
                           "walked once")
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if _has_image_suffix(f) and not f.startswith(".")]
    return Sources(found + [str(p) for p in unlisted if p is not None], skipped)


def _list_file(path: Path) -> list[str]:
    """One path per line; blank lines and ``#`` comments skipped; relative paths are taken
    from the list file's folder. Listed files are kept even when missing or not images, so
    that they show up in errors.jsonl rather than vanish."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: cannot read the list of images ({err}); "
                          "pass a UTF-8 text file with one image path per line") from None
    entries = [line.strip() for line in lines]
    return [e if os.path.isabs(e) else os.path.join(path.parent, e)
            for e in entries if e and not e.startswith("#")]


def resolve_sources(source: str) -> list[str]:
    """Image paths named by ``source`` (:func:`find_sources`' files)."""
    return find_sources(source).files


def find_sources(source: str) -> Sources:
    """Image paths named by ``source``, in a stable order, and what was left out.

    - an existing folder: every image file below it (recursive, sorted, hidden names skipped;
      each folder walked once, however many links lead to it);
    - an existing ``.txt`` file: the paths it lists;
    - any other existing file: that file (decoded whatever its name);
    - a pattern with ``*``, ``?`` or ``[``: the matching image files (``**`` recurses).

    Raises:
        SourceError: ``source`` does not exist, or names no images.
    """
    path = Path(source)
    skipped: list[str] = []
    if path.is_dir():
        scan = _folder(path)
        found, skipped = scan.files, scan.skipped
        what = f"folder {source} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
    elif path.is_file():
        found = _list_file(path) if path.suffix.lower() == ".txt" else [source]
        what = f"list {source} names no images"
    elif glob.has_magic(source):
        found = sorted(p for p in glob.glob(source, recursive=True)
                       if _has_image_suffix(p) and os.path.isfile(p))
        what = f"pattern {source} matches no image files"
    else:
        raise SourceError(f"{source}: no such file or folder; pass an image, a folder, "
                          "a glob pattern (quoted) or a .txt list of paths")
    if not found:
        raise SourceError(f"{what}; check the path")
    return Sources(found, skipped)
