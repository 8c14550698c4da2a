"""Exceptions whose message is the whole story: what is wrong, where, and the fix.

The command line prints ``error: <message>`` for these and exits with status 2,
without a traceback.
"""

from __future__ import annotations


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


class OutputExistsError(VisionTasksError):
    """An output file or folder already holds results that a command would overwrite."""
