"""Plug-ins by name: the one lookup mechanism for parts that another distribution may add.

Tasks (group ``vision_tasks.tasks``), backbones (``vision_tasks.backbones``), CLI verbs
(``vision_tasks.commands``) and model formats of ``val`` (``vision_tasks.evaluators``) are
Python entry points: a distribution declares them in its own metadata (``pyproject.toml``
``[project.entry-points."vision_tasks.tasks"]``), and the core finds them here by name,
without importing any of them to list their names. Closed, in-module choices (activations,
optimizers) are plain dictionaries next to their code.
"""

from __future__ import annotations

import difflib
import sys
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from vision_tasks.errors import UnknownNameError

TASKS = "vision_tasks.tasks"
BACKBONES = "vision_tasks.backbones"
COMMANDS = "vision_tasks.commands"
EVALUATORS = "vision_tasks.evaluators"


@lru_cache(maxsize=16)
def _group(group: str, path: tuple[str, ...]) -> dict[str, EntryPoint]:
    # Cached per sys.path: a distribution added to the path later is found on the next call.
    return {ep.name: ep for ep in entry_points(group=group)}


def plugins(group: str) -> dict[str, EntryPoint]:
    """Entry points of ``group`` by name (not loaded)."""
    return _group(group, tuple(sys.path))


def names(group: str) -> list[str]:
    """The sorted names in ``group``."""
    return sorted(plugins(group))


def load(group: str, name: str, kind: str) -> Any:
    """The object the entry point ``name`` of ``group`` names.

    Raises:
        UnknownNameError: (a KeyError) no such name; the message lists the choices and the nearest one
            (``kind`` names what was asked for: "task", "backbone", ...).
    """
    found = plugins(group)
    if name not in found:
        raise UnknownNameError(unknown_name_message(kind, name, sorted(found)))
    return found[name].load()


def resolve(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names, imported on demand (a
    task spec's ``training`` side: torch is imported only when it is asked for)."""
    return EntryPoint(name=reference, value=reference, group="").load()


def unknown_name_message(kind: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown {kind} '{name}': {hint}choose one of {', '.join(choices)}"
