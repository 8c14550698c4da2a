"""Exceptions whose message is the whole story: what is wrong, where, and the fix.

The command line prints ``error: <message>`` for these and exits with status 2,
without a traceback.
"""

from __future__ import annotations

import re


class VisionTasksError(Exception):
    """Base class of the product's user-facing errors."""


class ConfigError(VisionTasksError, ValueError):
    """A config file or ``--set`` override is malformed."""


class DataError(VisionTasksError, ValueError):
    """A data set on disk is missing or malformed."""


class CheckpointError(VisionTasksError, ValueError):
    """A checkpoint file is missing, corrupt or of the wrong kind."""


class DeviceError(VisionTasksError, ValueError):
    """A device (``train.device``, ``--device``) that is unknown or not usable on this machine."""


class UnknownNameError(VisionTasksError, KeyError):
    """A task, backbone or other plug-in name that is not installed (a KeyError too, for the
    callers that look names up); its message is the plain sentence, not KeyError's quoted one."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutputExistsError(VisionTasksError):
    """An output file or folder already holds results that a command would overwrite."""


class OutputWriteError(VisionTasksError):
    """An output file cannot be written (a full disk, no permission); what was written stays."""


class TrainingDiverged(VisionTasksError):
    """The loss or the weights became NaN or infinite; the checkpoints of the last good
    epoch stay as they were."""


def first_sentence(text: str) -> str:
    """The first sentence of another library's error message, on one line (its terminal
    colour codes dropped): a message cut short, never one cut in the middle."""
    flat = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", text).split())
    end = re.search(r"[.!?](\s|$)", flat)
    return flat[: end.start()] if end else flat
