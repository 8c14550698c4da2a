"""How the command line fails: one line, ``error: <what>; <what to do>``, exit status 2.

:func:`run_verb` runs a parsed verb and turns every failure the product knows about (its own
errors, unreadable images, files it cannot read or write, a missing extra, out of memory) into
that line; :class:`OneLineParser` does the same for argparse's refusals. Imports without torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from typing import NoReturn

from vision_tasks.errors import VisionTasksError
from vision_tasks.imaging import ImageError

# Import name -> distribution of the ``train`` extra (pyproject.toml), and of the packages they
# bring that our code imports directly: a ModuleNotFoundError for one of these means the extra
# is not installed, not a bug.
TRAIN_EXTRA = {
    "torch": "torch", "torchvision": "torchvision", "yaml": "pyyaml",
    "albumentations": "albumentations", "albucore": "albucore", "matplotlib": "matplotlib",
    "tensorboard": "tensorboard", "onnx": "onnx", "onnxscript": "onnxscript",
    "onnx_ir": "onnx-ir", "scipy": "scipy",
}
# The same for the ``ray`` extra (``predict --engine ray``): Ray and what Ray Data needs.
RAY_EXTRA = {"ray": "ray", "pyarrow": "pyarrow", "pandas": "pandas"}
# Each extra: how the message calls it, its modules, and the distribution whose absence means
# that the extra is not installed at all.
EXTRAS = {"train": ("the training extra", TRAIN_EXTRA, "torch"),
          "ray": ("the ray extra", RAY_EXTRA, "ray")}


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose refusals are one line, as every other error of the command line
    (``error: <what>; <what to do>``, exit status 2), instead of the usage block; its
    sub-parsers (every verb, plug-ins' too) are of this class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def run_verb(args: argparse.Namespace) -> int:
    """``args.func(args)``'s exit status; a known failure is one line on stderr and status 2
    (141 when the reader of our output went away, 130 on Ctrl-C)."""
    try:
        return int(args.func(args) or 0)
    except (VisionTasksError, ImageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output went away (`... | head -1`): not a fault
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except OSError as err:  # a file the command cannot read or write (a full disk, ...)
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}; check the path, its permissions and the "
              "free disk space", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        missing = _extra_missing(err)
        if missing is None:
            raise
        extra, what, distribution = missing
        engine = getattr(args, "engine", "local")
        verb = " ".join(v for v in (args.verb, getattr(args, "data_verb", None),
                                    None if engine == "local" else f"--engine {engine}") if v)
        print(f"error: vision-tasks {verb} needs {what} ({distribution} is not installed): "
              f"pip install 'vision-tasks[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as err:  # RuntimeError: torch's allocators
        if not isinstance(err, MemoryError) and "allocate" not in str(err) \
                and "out of memory" not in str(err):
            raise
        asked = re.search(r"allocate (\d+) bytes", str(err))
        size = f" ({int(asked[1]) / 2**30:.1f} GiB asked for)" if asked else ""
        print(f"error: out of memory{size}; choose smaller sizes: model.backbone.width, "
              "data.image_size, train.batch_size or --batch-size", file=sys.stderr)
        return 2


def _extra_missing(err: ModuleNotFoundError) -> tuple[str, str, str] | None:
    """The extra ``err`` says is missing (its ``EXTRAS`` key and name) and the distribution
    to name: the extra's main one when it is absent (the extra is not installed at all; torch
    for ``train``), else the one whose module was not found; None when the missing module is
    no extra's (a real fault: its traceback is shown)."""
    top = (err.name or "").partition(".")[0]
    for extra, (what, modules, main_distribution) in EXTRAS.items():
        if top in modules:
            absent = importlib.util.find_spec(main_distribution) is None
            return extra, what, main_distribution if absent else modules[top]
    return None
