"""The training side of ``localize`` (torch): head, loss, metric, drawing, data."""


from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, generalized_box_iou_loss

from vision_tasks.data.single_object import build_single_object, collate_single_object
from vision_tasks.data.synth import write_coco
from vision_tasks.data.synth_hard import synth_style
from vision_tasks.models.layers import activation_width, check_activation, make_activation
from vision_tasks.plotting import pyplot, save_figure
from vision_tasks.task_api import Evaluator, Task, TaskHead, coco_demo_overrides

from . import SPEC, LocalizeHeadConfig, LocalizeLossConfig

IOU_THRESHOLD = 0.5  # corloc's "the box is right"


class LocalizeHead(TaskHead):
    """Last feature map [N, C, h, w] -> raw outputs:

    ``{"logits": [N, num_classes], "boxes": [N, 4] (x1, y1, x2, y2) input pixels, not
    clipped}``. The box is predicted as a sigmoid
    centre (cx, cy) and size (w, h) relative to the input, so it trains from a sensible
    start (a centred box of half the input) and exports as a few element-wise ops.
    """

    def __init__(self, channels: int, height: int, width: int, num_classes: int,
                 input_size: tuple[int, int], cfg: LocalizeHeadConfig) -> None:
        super().__init__()
        check_activation(cfg.activation, "model.head.activation")
        k = activation_width(cfg.activation)
        self.reduce = nn.Sequential(nn.Conv2d(channels, cfg.channels * k, 1, bias=False),
                                    nn.BatchNorm2d(cfg.channels * k), make_activation(cfg.activation))
        trunk: list[nn.Module] = [nn.Flatten(), nn.Linear(cfg.channels * height * width, cfg.hidden * k),
                                  make_activation(cfg.activation)]
        if cfg.dropout > 0:
            trunk.append(nn.Dropout(cfg.dropout))
        self.trunk = nn.Sequential(*trunk)
        self.classifier = nn.Linear(cfg.hidden, num_classes)
        self.box = nn.Linear(cfg.hidden, 4)
        nn.init.zeros_(self.box.weight)
        nn.init.zeros_(self.box.bias)
        in_h, in_w = input_size
        self.register_buffer("bounds", torch.tensor([in_w, in_h, in_w, in_h], dtype=torch.float32),
                             persistent=False)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        x = self.trunk(self.reduce(features[-1]))
        cx, cy, w, h = self.box(x).sigmoid().unbind(dim=1)
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1) * self.bounds
        return {"logits": self.classifier(x), "boxes": boxes}

    def postprocess(self, outputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Raw outputs -> ``{"scores": float [N, C] softmax, "boxes": float [N, 4]
        (x1, y1, x2, y2) input pixels, clipped to [0, W] x [0, H]}``; traceable."""
        boxes = torch.minimum(outputs["boxes"].clamp(min=0), self.bounds)
        return {"scores": outputs["logits"].softmax(dim=1), "boxes": boxes}


class LocalizeLoss(nn.Module):
    """``cls * CE + l1 * L1(boxes / input size) + giou * GIoU``, each averaged over the batch.

    Targets: ``{"labels": int64 [N], "boxes": float [N, 4] (x1, y1, x2, y2) input pixels}``.
    """

    def __init__(self, cfg: LocalizeLossConfig, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.cfg = cfg
        h, w = input_size
        self.bounds = (float(w), float(h), float(w), float(h))  # boxes / bounds: 0..1

    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]
                ) -> tuple[Tensor, dict[str, Tensor]]:
        cls = F.cross_entropy(outputs["logits"], targets["labels"],
                              label_smoothing=self.cfg.label_smoothing)
        pred, true = outputs["boxes"], targets["boxes"].to(outputs["boxes"].dtype)
        bounds = pred.new_tensor(self.bounds)
        l1 = F.l1_loss(pred / bounds, true / bounds)
        giou = generalized_box_iou_loss(pred, true, reduction="mean")
        total = self.cfg.cls * cls + self.cfg.l1 * l1 + self.cfg.giou * giou
        return total, {"cls": cls.detach(), "l1": l1.detach(), "giou": giou.detach()}


class LocalizeEvaluator(Evaluator):
    """Per image: is the class right, and the IoU of the predicted box with the true one."""

    def __init__(self, class_names: list[str]) -> None:
        self.names = class_names
        self.labels: list[Tensor] = []
        self.correct: list[Tensor] = []
        self.ious: list[Tensor] = []

    def update(self, predictions: dict[str, Tensor], targets: Any) -> None:
        labels = torch.as_tensor(targets["labels"])
        self.labels.append(labels)
        self.correct.append(predictions["scores"].argmax(dim=1) == labels)
        self.ious.append(box_iou(predictions["boxes"].float(), targets["boxes"].float()).diagonal())

    def compute(self) -> dict[str, Any]:
        labels, correct, ious = self._stacked()
        hit = correct & (ious >= IOU_THRESHOLD)
        n = max(len(labels), 1)
        per_class = {name: float(hit[labels == i].float().mean()) if (labels == i).any() else None
                     for i, name in enumerate(self.names)}
        return {"top1": float(correct.sum()) / n, "mean_iou": float(ious.sum()) / n,
                "corloc": float(hit.sum()) / n,
                "box_iou50": float((ious >= IOU_THRESHOLD).sum()) / n,
                "images": len(labels), "per_class_corloc": per_class}

    def _stacked(self) -> tuple[Tensor, Tensor, Tensor]:
        if not self.labels:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool), torch.zeros(0)
        return torch.cat(self.labels), torch.cat(self.correct), torch.cat(self.ious)

    def save_plots(self, out_dir: Path) -> list[Path]:
        path = Path(out_dir) / "iou_histogram.png"
        _, correct, ious = self._stacked()
        draw_iou_histogram(ious, correct, path)
        return [path]


def draw_iou_histogram(ious: Tensor, correct: Tensor, path: Path) -> None:
    """IoU of each image's predicted box ``[N]``, stacked by right / wrong class ``[N] bool``."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bins = [i / 20 for i in range(21)]
    ax.hist([ious[correct].numpy(), ious[~correct].numpy()], bins=bins, stacked=True,
            color=["tab:green", "tab:red"], label=["class right", "class wrong"])
    ax.axvline(IOU_THRESHOLD, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("IoU of predicted and true box")
    ax.set_ylabel("images")
    ax.set_title(f"box IoU (corloc: right class and IoU >= {IOU_THRESHOLD})")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_figure(fig, path)


class LocalizeTask(Task):
    spec = SPEC
    primary_metric = "corloc"

    def build_dataset(self, cfg, split, train, class_names=None):
        return build_single_object(cfg, split, train, cfg.task_options.multi_object, class_names)

    def collate(self, batch):
        return collate_single_object(batch)

    def build_head(self, cfg, features, num_classes, feature_shapes):
        channels, height, width = feature_shapes[-1]
        size = cfg.data.image_size
        return LocalizeHead(channels, height, width, num_classes, (size, size), cfg.model.head)

    def build_loss(self, cfg, head):
        size = cfg.data.image_size
        return LocalizeLoss(cfg.loss, (size, size))

    def make_evaluator(self, class_names, category_ids):
        return LocalizeEvaluator(class_names)

    def synthesize(self, out, n_train, n_val, size, seed, style="default"):
        return write_coco(out, n_train, n_val, size, seed, 1, 1, overwrite=True,
                          style=synth_style(style))

    def demo_overrides(self, data_dir: Path) -> list[str]:
        return coco_demo_overrides(data_dir)


TASK = LocalizeTask()
