"""Warnings of the product on the command line: one line ``warning: <message>`` on stderr,
written through the progress bar (``tqdm.write``) so that it never lands glued to a bar,
and without Python's ``file.py:123: UserWarning:`` prefix and source line.

Only the product's own warnings (raised in its modules) are reformatted; other libraries'
keep Python's format, which names where they come from.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO


def _package_roots() -> tuple[str, ...]:
    roots = []
    for name in ("vision_tasks", "vision_tasks.export"):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            roots += [os.path.realpath(p) + os.sep
                      for p in (spec.submodule_search_locations or []) if spec]
    return tuple(roots)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While inside, the product's warnings print as ``warning: <message>`` (see above)."""
    roots = _package_roots()
    previous = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> Any:
        if not roots or not os.path.realpath(filename).startswith(roots):
            return previous(message, category, filename, lineno, file, line)
        text = f"warning: {message}"
        try:
            from tqdm import tqdm

            tqdm.write(text, file=file or sys.stderr)
        except ImportError:
            print(text, file=file or sys.stderr)
        return None

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous
