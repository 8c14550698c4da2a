"""One run per output: an OS lock that a verb holds on its output for the run's lifetime.

A verb that writes (``predict``, ``train``, ``export``, ``data synth``, ``data convert``)
takes the lock once, in its command function, before it writes anything; a second run into
the same output stops at once with one line naming the holder's pid, instead of mixing,
duplicating or losing the first run's results.

The lock is ``fcntl.flock`` on a lock file (``LOCK_NAME`` inside an output folder, or
``.<name>.lock`` beside an output file): the kernel releases it when the holder's process
ends, however it ends, so a crashed or killed run never leaves a stale lock. The file holds
the holder's pid (text) for the message; it is removed when the lock is given back. Where
``fcntl`` is missing (Windows) the lock is not taken.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vision_tasks.errors import VisionTasksError
from vision_tasks.fileio import sweep_temp_files

try:
    import fcntl
except ImportError:  # Windows: no advisory locks of this kind
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".vision-tasks.lock"
# Set by ``train --nproc N`` (the value: the resolved --out) for the torchrun processes it
# starts: it holds that folder's lock for them.
OUT_LOCKED_ENV = "VISION_TASKS_OUT_LOCKED"
SIGTERM_STATUS = 143  # 128 + SIGTERM, the shell's status of a run ended by SIGTERM


class OutputInUseError(VisionTasksError):
    """Another live process holds the lock on this output."""


def lock_path_for(target: str | os.PathLike, is_file: bool = False) -> Path:
    """The lock file of ``target``: ``target/LOCK_NAME`` for a folder, ``.<name>.lock``
    beside it for a file."""
    target = Path(target)
    return target.parent / f".{target.name}.lock" if is_file else target / LOCK_NAME


def _holder_pid(path: Path) -> str:
    """The pid the holder wrote, or ``unknown`` (it may be between lock and write)."""
    for _ in range(20):
        with contextlib.suppress(OSError):
            text = path.read_text(encoding="ascii", errors="replace").strip()
            if text.isdigit():
                return text
        time.sleep(0.05)
    return "unknown"


def _acquire(path: Path, shown: str, option: str) -> int | None:
    """Lock ``path`` (created if missing) and write our pid into it; the open descriptor,
    or None without fcntl. Raises :class:`OutputInUseError` when another process holds it."""
    if fcntl is None:
        return None
    for _ in range(10):  # the holder may remove the file between our open and our lock
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputInUseError(
                f"{shown} is in use by another vision-tasks run (pid {_holder_pid(path)}); "
                f"wait for it to finish or choose another {option}") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
            return fd
        os.close(fd)  # we locked a file its holder had just removed: take the new one
    raise OutputInUseError(f"{shown}: could not take its lock file {path}; "
                           f"try again or choose another {option}")


def _release(path: Path, fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        path.unlink()  # while still locked: a waiting opener sees a new file, never a race
    os.close(fd)


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(SIGTERM_STATUS)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit(143)`` in the main thread, so that ``finally``
    blocks (temporary files, the lock) run; the previous handler comes back after. Outside
    the main thread, or where a handler is already set, nothing changes."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def hold_output(target: str | os.PathLike, *, is_file: bool = False, option: str = "--out",
                sigterm: bool = False, sweep_depth: int = 1) -> Iterator[Path]:
    """Hold the run lock of output ``target`` (a folder, made if missing; or with ``is_file``
    one file, whose folder is made if missing) while inside; yields the lock file's path.

    On entry our own temporary files left there by a killed run (``fileio.sweep_temp_files``)
    are removed (in a folder down to ``sweep_depth`` levels of sub-folders): none of them can
    belong to a live run, as the lock says no other run is writing. ``option`` names what to change in the message (``--out``, ``OUT``).
    ``sigterm``: SIGTERM unwinds like Ctrl-C while inside (see ``_sigterm_unwinds``).

    Raises:
        OutputInUseError: another live process holds the lock (the message names its pid).
        VisionTasksError: a folder ``target`` is a file.
    """
    target = Path(target)
    folder = target.parent if is_file else target
    if folder.exists() and not folder.is_dir():
        raise VisionTasksError(f"{folder}: is a file, not a folder; pass {option} a folder "
                               "(it is made if missing)")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = lock_path_for(target, is_file)
    try:
        fd = _acquire(path, str(target), option)
    except BaseException:
        _remove_if_empty(folder, created)
        raise
    try:
        sweep_temp_files(folder, only=target.name if is_file else None,
                         depth=0 if is_file else sweep_depth,
                         spare=None if is_file else _file_lock_held)
        if sigterm:
            with _sigterm_unwinds():
                yield path
        else:
            yield path
    finally:
        _release(path, fd)
        _remove_if_empty(folder, created)


def _file_lock_held(folder: str, target: str) -> bool:
    """Whether a live process holds the file lock of ``target`` in ``folder`` (an export
    writing it now: its temporary file is not stale)."""
    if fcntl is None:
        return False
    try:
        fd = os.open(os.path.join(folder, f".{target}.lock"), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing gives back a lock we took
    return False


def _remove_if_empty(folder: Path, created: bool) -> None:
    """A folder this run made and left empty (it failed before writing) goes again."""
    if created:
        with contextlib.suppress(OSError):
            folder.rmdir()
