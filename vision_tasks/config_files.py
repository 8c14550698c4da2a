"""Raw config mappings, before validation: a YAML file (``read_yaml``), the chain of configs it
builds on (``base:``, :func:`read_config_file`) and ``--set`` overrides (:func:`apply_overrides`).
:mod:`vision_tasks.config` validates what these give into typed dataclasses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from vision_tasks.configs import resolve
from vision_tasks.errors import ConfigError

# ---------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.01"`` -> (["train", "lr"], 0.01)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text}: the key '{key}' is not a dotted name like train.lr")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a raw config mapping (in place; also returned)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {text}: '{where}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return raw


# ---------------------------------------------------------------- loading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the path (ready configs are in configs/)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: YAML syntax error{line}: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}); save the config as "
                          "UTF-8 YAML") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; a config names at least its task (e.g. "
                          "task: classify) or a base (base: detect)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


BASE_KEY = "base"
"""A config file's ``base: NAME`` builds on another: a ready config's name (``detect``) or a
YAML file (a path relative to the file that names it). The file's keys are laid over the
base's: mappings merge key by key, any other value (a list, a number, null) replaces the
base's. A base may have its own base; the run folder's ``config.yaml`` is the resolved whole."""


def read_config_file(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """:func:`read_yaml` of ``path`` with its ``base`` chain resolved (see :data:`BASE_KEY`)."""
    path = Path(path)
    raw = read_yaml(path)
    base = raw.pop(BASE_KEY, None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY}: expected the name of a ready config or a YAML "
                          f"file, got {base!r}")
    relative = path.parent / base
    try:
        base_path = relative if relative.is_file() else resolve(base)
    except ConfigError as err:  # name the file whose base is missing
        raise ConfigError(f"{path}: {BASE_KEY}: {err}") from None
    chain = (*_chain, path.resolve())
    if base_path.resolve() in chain:
        names = " -> ".join(str(p) for p in (*chain, base_path))
        raise ConfigError(f"{path}: {BASE_KEY}: configs build on each other in a circle ({names}); "
                          "break the circle")
    return _merge(read_config_file(base_path, chain), raw)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
