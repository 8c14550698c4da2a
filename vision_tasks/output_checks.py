"""What a data verb may find in its output folder before it writes: nothing of the user's.

``data synth`` and ``data convert`` write a whole data set into OUT. Into a folder that
already holds files they would mix their files with the user's (and an earlier synth deleted
them); so such a folder is refused unless ``--overwrite``, and then each verb replaces only
the files it writes itself (``vision_tasks.data.synth``: ``<split>/.../<6 digits>.png`` and
``annotations.json``), never another file.
"""

from __future__ import annotations

import os
from pathlib import Path

from vision_tasks.errors import VisionTasksError
from vision_tasks.locks import LOCK_NAME


def _files_in(folder: Path, limit: int = 1000) -> list[Path]:
    """Up to ``limit`` files below ``folder`` (our lock file left out), in walk order."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not (root == str(folder) and name == LOCK_NAME):
                found.append(Path(root) / name)
                if len(found) >= limit:
                    return found
    return found


def _check_empty(out: Path, overwrite: bool, verb: str) -> None:
    if overwrite or not out.is_dir():
        return
    files = _files_in(out)
    if files:
        count = f"{len(files)}+" if len(files) >= 1000 else str(len(files))
        raise VisionTasksError(
            f"{out}: already holds {count} file(s) (e.g. {files[0]}); data {verb} writes a whole "
            f"set: choose an empty or new OUT, or pass --overwrite to replace only the files "
            f"{verb} writes (all others are kept)")


MAX_SYNTH_SIZE = 4096  # pixels a side: 48 MiB an RGB image, far past any use of a shapes set


def check_synth_args(n_train: int | None, n_val: int | None, size: int | None,
                     frames: int) -> None:
    """``data synth``'s numbers before anything is allocated or written: counts >= 0, a side
    in [16, MAX_SYNTH_SIZE] pixels, at least one frame."""
    for flag, value in (("--train", n_train), ("--val", n_val)):
        if value is not None and value < 0:
            raise VisionTasksError(f"data synth {flag} {value}: a count of images (videos for "
                                   "track) must be 0 or more")
    if size is not None and not 16 <= size <= MAX_SYNTH_SIZE:
        raise VisionTasksError(f"data synth --size {size}: the image side must be 16 to "
                               f"{MAX_SYNTH_SIZE} pixels")
    if frames < 1:
        raise VisionTasksError(f"data synth --frames {frames}: must be 1 or more")


def check_synth_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that holds files unless ``overwrite`` (see the module doc)."""
    _check_empty(out, overwrite, "synth")


def check_convert_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that holds files unless ``overwrite`` (see the module doc)."""
    _check_empty(out, overwrite, "convert")


def check_compose_out(out: Path, overwrite: bool) -> None:
    """``compose --out``: an existing file is replaced only when it is a vision-tasks
    checkpoint (an earlier compose or train wrote it), or with ``overwrite``; a folder is
    refused. Never a file of the user's."""
    if out.is_dir():
        raise VisionTasksError(f"{out}: is a folder; pass --out the .pt file to write")
    if overwrite or not out.exists():
        return
    from vision_tasks.engine.checkpoint import load_checkpoint  # torch: compose has it

    try:
        load_checkpoint(out)
    except VisionTasksError:
        raise VisionTasksError(f"{out}: exists and is not a vision-tasks checkpoint; choose "
                               "another --out, or pass --overwrite to replace it") from None
