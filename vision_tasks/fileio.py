"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The new content goes to a temporary file beside the target, which then replaces it
(``os.replace``, atomic on POSIX and Windows). With ``durable=True`` the temporary file is
flushed to disk before the replace and the folder after it, so that a power cut or a
crash of the machine also leaves the old file or the whole new one (checkpoints, exported
models); without it a machine crash may lose the newest write, a process crash never does.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# The names ``atomic_path`` gives its temporary files: ``.<target name>.<8 random>.tmp``
# (tempfile.mkstemp's random part is 8 of [a-z0-9_]).
TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


@functools.cache
def process_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc), so
    that no other thread can create a file under a momentarily different umask."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: the only portable way is to set it and put it back
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return  # Windows cannot open a folder; its os.replace is already durable enough
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (flushed to
    disk first with ``durable``). On an exception the temporary file is removed and
    ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp makes 0600; the usual permissions
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent, directory=True)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sweep_temp_files(folder: str | os.PathLike, only: str | None = None, depth: int = 0,
                     spare: Callable[[str, str], bool] | None = None) -> int:
    """Remove the temporary files of ``atomic_path`` (``TEMP_NAME``) that a killed run left
    in ``folder`` and its sub-folders down to ``depth`` levels (0: ``folder`` only); with
    ``only``, just those of the target called ``only``; ``spare(folder, target name)`` True
    keeps a target's (another process may be writing it). Call it only while no other
    process may write there (under ``vision_tasks.locks.hold_output``). Returns how many
    went."""
    removed = 0
    with contextlib.suppress(OSError):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if depth > 0:
                        removed += sweep_temp_files(entry.path, only, depth - 1, spare)
                    continue
                match = TEMP_NAME.match(entry.name)
                if match and (only is None or match["target"] == only) and entry.is_file() \
                        and not (spare and spare(os.fspath(folder), match["target"])):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed += 1
    return removed


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = False) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, durable: bool = False) -> None:
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)
