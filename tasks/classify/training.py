"""The training side of ``classify`` (torch): head, loss, metric, drawing, data."""


from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_tasks.data.imagefolder import build_imagefolder
from vision_tasks.data.synth import write_imagefolder
from vision_tasks.data.synth_hard import synth_style
from vision_tasks.models.layers import activation_width, check_activation, make_activation
from vision_tasks.plotting import pyplot, save_figure
from vision_tasks.task_api import Evaluator, Task, TaskHead

from . import SPEC, ClassifyHeadConfig


class ClassifyHead(TaskHead):
    """Last feature map [N, C, H, W] -> logits [N, num_classes]; post-processed: softmax
    ``scores`` [N, C]."""

    def __init__(self, channels: int, height: int, width: int, num_classes: int,
                 cfg: ClassifyHeadConfig) -> None:
        super().__init__()
        check_activation(cfg.activation, "model.head.activation")
        if cfg.pool == "flatten":
            self.pool: nn.Module = nn.Flatten()
            n_in = channels * height * width
        else:
            pool = nn.AdaptiveAvgPool2d(1) if cfg.pool == "avg" else nn.AdaptiveMaxPool2d(1)
            self.pool = nn.Sequential(pool, nn.Flatten())
            n_in = channels
        layers: list[nn.Module] = []
        for units in cfg.hidden:
            layers += [nn.Linear(n_in, units * activation_width(cfg.activation)),
                       make_activation(cfg.activation)]
            if cfg.dropout > 0:
                layers.append(nn.Dropout(cfg.dropout))
            n_in = units
        if cfg.dropout > 0 and not cfg.hidden:
            layers.append(nn.Dropout(cfg.dropout))
        layers.append(nn.Linear(n_in, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.classifier(self.pool(features[-1]))

    def postprocess(self, logits: Tensor) -> dict[str, Tensor]:
        return {"scores": logits.softmax(dim=1)}


class ClassifyLoss(nn.Module):
    def __init__(self, label_smoothing: float) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing), {}


class ClassifyEvaluator(Evaluator):
    """Accumulates a confusion matrix and top-k hits."""

    def __init__(self, class_names: list[str]) -> None:
        self.names = class_names
        self.k = min(5, len(class_names))
        self.confusion = torch.zeros(len(class_names), len(class_names), dtype=torch.int64)
        self.topk_hits = 0

    def update(self, predictions: dict[str, Tensor], targets: Any) -> None:
        scores, labels = predictions["scores"], torch.as_tensor(targets)
        top = scores.topk(self.k, dim=1).indices
        self.topk_hits += int((top == labels[:, None]).any(dim=1).sum())
        n = len(self.names)
        self.confusion += torch.bincount(labels * n + top[:, 0], minlength=n * n).view(n, n)

    def compute(self) -> dict[str, Any]:
        total = int(self.confusion.sum())
        per_class_total = self.confusion.sum(dim=1).clamp(min=1)
        per_class = (self.confusion.diag() / per_class_total).tolist()
        return {
            "top1": float(self.confusion.diag().sum()) / max(total, 1),
            f"top{self.k}" if self.k != 5 else "top5": self.topk_hits / max(total, 1),
            "images": total,
            "per_class_accuracy": dict(zip(self.names, per_class, strict=True)),
            "confusion_matrix": self.confusion.tolist(),
        }

    def save_plots(self, out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "confusion_matrix.png"
        draw_confusion_matrix(self.confusion, self.names, path)
        return [path]


def draw_confusion_matrix(confusion: Tensor, names: list[str], path: Path) -> None:
    """Rows: true class; columns: predicted class; colour: share of the row; numbers: counts."""
    plt = pyplot()

    counts = confusion.numpy()
    share = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    n = len(names)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("confusion matrix")
    fig.tight_layout()
    save_figure(fig, path)


class ClassifyTask(Task):
    spec = SPEC
    primary_metric = "top1"

    def build_dataset(self, cfg, split, train, class_names=None):
        return build_imagefolder(cfg, split, train, class_names)

    def build_head(self, cfg, features, num_classes, feature_shapes):
        channels, height, width = feature_shapes[-1]
        return ClassifyHead(channels, height, width, num_classes, cfg.model.head)

    def build_loss(self, cfg, head):
        return ClassifyLoss(cfg.loss.label_smoothing)

    def make_evaluator(self, class_names, category_ids):
        return ClassifyEvaluator(class_names)

    def synthesize(self, out, n_train, n_val, size, seed, style="default"):
        return write_imagefolder(out, n_train, n_val, size, seed, overwrite=True,
                                 style=synth_style(style))


TASK = ClassifyTask()
