"""The ready configs (``<name>.yaml``), shipped inside the package as ``vision_tasks.configs``.

``vision-tasks train detect`` means this package's ``detect.yaml``: a CONFIG argument that is
not an existing file but is a ready config's name (with or without ``.yaml``) is read from
here through ``importlib.resources``, in a source checkout and in an installed wheel alike.
Standard library only: the torch-free runtime install imports this package too.
"""

from __future__ import annotations

import difflib
from importlib.resources import files
from pathlib import Path

from vision_tasks.errors import ConfigError

SUFFIXES = (".yaml", ".yml")


def names() -> list[str]:
    """The ready configs' names (``classify``, ``detect``, ...), sorted."""
    return sorted(entry.name.rsplit(".", 1)[0] for entry in files(__name__).iterdir()
                  if entry.is_file() and entry.name.endswith(SUFFIXES))


def _stem(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def path(name: str) -> Path:
    """The file of the ready config ``name`` (``detect`` or ``detect.yaml``); a ``ConfigError``
    listing the ready configs (and the nearest name) when there is none of that name."""
    stem = _stem(name)
    for suffix in SUFFIXES:
        resource = files(__name__) / f"{stem}{suffix}"
        if "/" not in stem and resource.is_file():
            return Path(str(resource))
    available = names()
    nearest = difflib.get_close_matches(Path(stem).name, available, n=1, cutoff=0.5)
    hint = f" (did you mean '{nearest[0]}'?)" if nearest else ""
    raise ConfigError(f"{name}: no such config file, and no ready config of that name{hint}; "
                      f"ready configs: {', '.join(available)}")


def resolve(arg: str | Path) -> Path:
    """A CONFIG argument as a file: ``arg`` itself when it is an existing file, else the ready
    config of that name (see ``path``, whose error lists the ready configs)."""
    given = Path(arg)
    return given if given.is_file() else path(str(arg))
