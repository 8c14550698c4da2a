"""What a training run leaves behind besides weights: metrics.csv, TensorBoard
events and loss/metric curves as PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from vision_tasks.fileio import atomic_write_text
from vision_tasks.plotting import pyplot, save_figure


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
