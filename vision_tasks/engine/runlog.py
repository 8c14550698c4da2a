"""What a training run leaves behind besides weights: metrics.csv, TensorBoard
events and loss/metric curves as PNG; and which names a run writes in its folder
(:func:`check_run_folder`: a user's file of the same name is replaced only with --overwrite)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from vision_tasks.errors import OutputExistsError
from vision_tasks.fileio import atomic_write_text
from vision_tasks.plotting import pyplot, save_figure

TRAIN_FILES = ("config.yaml", "metrics.csv", "curves.png", "weights/last.pt", "weights/best.pt")
"""What ``train`` writes in its run folder (besides ``tensorboard/``, whose event files have
names of their own, and the evaluation plots)."""
EVALUATION_PLOTS = ("confusion_matrix.png", "iou_histogram.png", "pr_curves.png",
                    "mask_pr_curves.png")
"""The plots the tasks' evaluators draw (``save_plots``): in the folder itself for one head,
in ``<head>/`` for each head of a multi-head model."""


def plot_names(heads: list[str] | None) -> list[str]:
    """The evaluation plots' paths below a run (or ``val``) folder; ``heads``: the head names
    of a multi-head model, ``None`` for one head."""
    return [f"{head}/{name}" if heads else name for head in (heads or [""])
            for name in EVALUATION_PLOTS]


def check_run_folder(folder: Path, names: list[str], overwrite: bool, verb: str) -> None:
    """Refuse to write ``names`` (paths below ``folder``) over files that are there already,
    unless ``overwrite``: a user's folder keeps its files.

    Raises:
        OutputExistsError: one line naming the first such file and the fix.
    """
    if overwrite or not folder.is_dir():
        return
    clash = next((folder / n for n in names if (folder / n).exists() or (folder / n).is_symlink()),
                 None)
    if clash is not None:
        raise OutputExistsError(f"{clash}: already exists and {verb} would replace it; choose "
                                f"another --out, or pass --overwrite to replace the files {verb} "
                                "writes there (other files stay)")


def remove_earlier_run(folder: Path) -> None:
    """``train --overwrite`` over a run of ours: its weights and TensorBoard events go (a new
    run killed before its first epoch leaves no old ``last.pt`` to resume by mistake, and its
    curves do not mix with the old ones); every other file stays or is replaced as written."""
    for name in ("weights/last.pt", "weights/best.pt"):
        (folder / name).unlink(missing_ok=True)
    board = folder / "tensorboard"
    if board.is_dir():
        for events in board.glob("events.out.tfevents.*"):
            events.unlink(missing_ok=True)


def write_metrics_csv(history: list[dict[str, Any]], path: Path) -> None:
    """One row per epoch; the whole file is rewritten atomically each epoch."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Every numeric column against epoch, one small panel each."""
    plt = pyplot()

    keys = [k for k in history[0] if k != "epoch" and isinstance(history[0][k], int | float)]
    if not keys:
        return
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, key in zip(axes.flat, keys, strict=False):
        ax.plot(epochs, [row.get(key, float("nan")) for row in history], marker="o", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


class TensorBoardLog:
    """Scalars per epoch under RUN/tensorboard; a missing tensorboard install is not fatal."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
            return
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, row: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "val_"))
                                       else key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
