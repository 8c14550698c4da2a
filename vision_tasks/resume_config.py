"""``train --resume`` continues a run with the config saved in its ``weights/last.pt``; a
config that says otherwise (a CONFIG argument, an edited ``RUN/config.yaml``) is refused with
the keys that differ, instead of being silently ignored or overwritten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vision_tasks.config import Config, load_config
from vision_tasks.errors import ConfigError

SHOWN = 3  # differing keys named in a message


def differences(saved: Any, other: Any, prefix: str = "") -> list[str]:
    """``"train.lr: 0.002 -> 0.1"`` for each leaf where the plain mappings differ."""
    if isinstance(saved, dict) and isinstance(other, dict):
        return [line for key in dict.fromkeys([*saved, *other])
                for line in differences(saved.get(key), other.get(key), f"{prefix}{key}.")]
    return [] if saved == other else [f"{prefix.rstrip('.')}: {saved!r} -> {other!r}"]


def _listed(lines: list[str]) -> str:
    more = f" and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    return "; ".join(lines[:SHOWN]) + more


def check_resume_config(saved: Config, run_dir: str | Path, config: str | Path | None) -> None:
    """Refuse ``--resume`` of ``run_dir`` (whose last.pt holds ``saved``) when ``config`` (the
    CONFIG argument, a file) or ``RUN/config.yaml`` differs from it.

    Raises:
        ConfigError: one line naming the file and the first differing keys.
    """
    run_dir = Path(run_dir)
    if config is not None:
        diffs = differences(saved.to_dict(), load_config(config).to_dict())
        if diffs:
            raise ConfigError(f"{config} differs from the config {run_dir} was trained with "
                              f"({_listed(diffs)}); --resume continues the run as it was saved: "
                              "drop CONFIG to continue it, or start a new run with another --out")
    written = run_dir / "config.yaml"
    if written.is_file():
        diffs = differences(saved.to_dict(), load_config(written).to_dict())
        if diffs:
            raise ConfigError(f"{written} was edited after the run saved it ({_listed(diffs)}); "
                              "--resume continues with the config in weights/last.pt and would "
                              f"overwrite the edit: put it back, or train the edited file into "
                              "another --out")
