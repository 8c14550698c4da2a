"""COCO-style box and mask metrics with pycocotools' COCOeval, in original-image coordinates.

The evaluator collects, per image, the ground truth exactly as the annotation file has it
(original pixels, original category ids, crowd flags and areas) and the model's fixed-K
detections mapped back from input pixels through the image's
:class:`~vision_tasks.imaging.Letterbox`, with class indices turned back into the original
category ids. So the numbers are those COCOeval gives for ``coco_results.json`` against the
annotation file itself.

Metrics: ``box_map`` (AP@[.5:.95]), ``box_map50``, ``box_map75``, ``box_map_small``,
``box_map_medium``, ``box_map_large``, ``box_mar100``, ``per_class_ap`` (class name -> AP, None
for a class without ground truth), ``images``, ``detections``; ``pr_curves.png`` on request.
With masks (task ``segment``) the same again as ``mask_*`` from COCOeval ``segm``: each
detection's mask probabilities (input frame, reduced resolution) are resampled once into
the original image, thresholded and run-length encoded; ``per_class_ap`` is then the mask
AP and ``per_class_box_ap`` the box AP.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vision_tasks.coco_results import category_id, coco_result
from vision_tasks.imaging import Letterbox
from vision_tasks.masks import masks_to_rles
from vision_tasks.plotting import pyplot, save_figure
from vision_tasks.task_api import Evaluator

_STAT_NAMES = {0: "map", 1: "map50", 2: "map75", 3: "map_small", 4: "map_medium",
               5: "map_large", 8: "mar100"}


def detections_to_coco(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                       letterbox: Letterbox, image_id: int, category_ids: list[int | None],
                       masks: np.ndarray | None = None,
                       mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """One image's detections -> COCO result dicts (``bbox`` [x, y, w, h] original pixels).

    ``boxes`` float ``[D, 4]`` (x1, y1, x2, y2) input pixels, ``scores`` ``[D]``, ``labels``
    int ``[D]`` class indices; a class without an original id (None) and an empty box are
    left out (one entry each: :func:`vision_tasks.coco_results.coco_result`). With
    ``masks`` float ``[D, Hm, Wm]`` (probabilities in the input frame) each result also has
    a ``segmentation``: compressed RLE over the original image.
    """
    original = letterbox.boxes_to_original(boxes)
    rles = (masks_to_rles(masks, original, letterbox, mask_threshold)
            if masks is not None else [None] * len(original))
    results = []
    for box, score, label, rle in zip(original.tolist(), scores.tolist(), labels.tolist(), rles,
                                      strict=True):
        category = category_id(label, category_ids)
        x1, y1, x2, y2 = box
        if category is None or x2 <= x1 or y2 <= y1:
            continue
        results.append(coco_result(int(image_id), box, score, category, rle))
    return results


class CocoEvaluator(Evaluator):
    """Accumulates detections and ground truth, scores them with COCOeval ('bbox', and
    'segm' too with ``masks``).

    ``update(predictions, targets)``: ``predictions`` as the detect contract (``boxes``
    [N, K, 4], ``scores`` [N, K], ``labels`` [N, K], ``num_detections`` [N]; with ``masks``
    also the segment contract's ``masks`` [N, K, Hm, Wm]); ``targets`` carries ``letterbox``
    (list of :meth:`Letterbox.to_dict`), ``coco`` (list of per-image ground-truth dicts:
    ``image_id``, ``width``, ``height``, ``annotations``, each with ``segmentation`` for
    masks).
    """

    def __init__(self, class_names: list[str], category_ids: list[int | None] | None,
                 masks: bool = False, mask_threshold: float = 0.5) -> None:
        self.names = class_names
        self.masks, self.mask_threshold = masks, mask_threshold
        # The evaluated set's id of each class: results and ground truth in the file's ids
        # (a set without ids: the class index).
        self.category_ids: list[int | None] = (list(category_ids) if category_ids is not None
                                               else list(range(len(class_names))))
        self.images: dict[int, dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []
        self.coco_eval: Any = None  # the box evaluation (its PR curves are plotted)
        self.mask_eval: Any = None

    def update(self, predictions: dict[str, torch.Tensor], targets: Any) -> None:
        counts = predictions["num_detections"].tolist()
        for i, (record, lb) in enumerate(zip(targets["coco"], targets["letterbox"], strict=True)):
            self.images[int(record["image_id"])] = record
            d = int(counts[i])
            masks = predictions["masks"][i, :d].float().numpy() if self.masks else None
            self.results += detections_to_coco(
                predictions["boxes"][i, :d].float().numpy(), predictions["scores"][i, :d].numpy(),
                predictions["labels"][i, :d].numpy(), Letterbox.from_dict(lb),
                record["image_id"], self.category_ids, masks, self.mask_threshold)

    def ground_truth(self) -> dict[str, Any]:
        """The collected ground truth as a COCO dataset dict (original ids and pixels)."""
        images, annotations = [], []
        for image_id, record in self.images.items():
            images.append({"id": image_id, "width": record["width"], "height": record["height"]})
            for ann in record["annotations"]:
                annotations.append({**ann, "image_id": image_id, "id": len(annotations) + 1})
        categories = [{"id": cid, "name": name}
                      for name, cid in zip(self.names, self.category_ids, strict=False) if cid is not None]
        return {"images": images, "annotations": annotations, "categories": categories}

    def compute(self) -> dict[str, Any]:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        kinds = [("box", "bbox")] + ([("mask", "segm")] if self.masks else [])
        metrics: dict[str, Any] = {f"{prefix}_{name}": 0.0 for prefix, _ in kinds
                                   for name in _STAT_NAMES.values()}
        metrics.update(images=len(self.images), detections=len(self.results),
                       per_class_ap=dict.fromkeys(self.names))
        if self.masks:
            metrics["per_class_box_ap"] = dict.fromkeys(self.names)
        self.coco_eval = self.mask_eval = None
        if not self.images or not self.results:
            return metrics
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = self.ground_truth()
            gt.createIndex()
            dt = gt.loadRes(self.results)
        for prefix, iou_type in kinds:
            with contextlib.redirect_stdout(io.StringIO()):
                coco_eval = COCOeval(gt, dt, iou_type)
                coco_eval.evaluate()
                coco_eval.accumulate()
                coco_eval.summarize()
            for index, name in _STAT_NAMES.items():
                metrics[f"{prefix}_{name}"] = max(float(coco_eval.stats[index]), 0.0)
            per_class = self._per_class_ap(coco_eval)
            if prefix == "box":
                self.coco_eval = coco_eval
                metrics["per_class_box_ap" if self.masks else "per_class_ap"] = per_class
            else:
                self.mask_eval = coco_eval
                metrics["per_class_ap"] = per_class
        return metrics

    def _per_class_ap(self, coco_eval: Any) -> dict[str, float | None]:
        """AP@[.5:.95] of every class (None: no ground truth of it)."""
        out: dict[str, float | None] = dict.fromkeys(self.names)
        precision = coco_eval.eval["precision"]  # [T, R, K, area, maxDets]
        ids = coco_eval.params.catIds
        for name, cid in zip(self.names, self.category_ids, strict=False):
            if cid is None or cid not in ids:
                continue
            p = precision[:, :, ids.index(cid), 0, -1]
            out[name] = float(p[p > -1].mean()) if (p > -1).any() else None
        return out

    def save_plots(self, out_dir: Path) -> list[Path]:
        paths = []
        for coco_eval, name in ((self.coco_eval, "pr_curves.png"),
                                (self.mask_eval, "mask_pr_curves.png")):
            if coco_eval is not None:
                paths.append(Path(out_dir) / name)
                draw_pr_curves(coco_eval, self.names, self.category_ids, paths[-1])
        return paths



def draw_pr_curves(coco_eval: Any, names: list[str], category_ids: list[int | None],
                   path: Path) -> None:
    """Precision-recall curve at IoU 0.5 of every class, and their mean (thick)."""
    plt = pyplot()
    precision = coco_eval.eval["precision"][0, :, :, 0, -1]  # [R, K] at IoU 0.5, all areas
    recall = coco_eval.params.recThrs
    ids = coco_eval.params.catIds
    fig, ax = plt.subplots(figsize=(6, 4.5))
    curves = []
    for name, cid in zip(names, category_ids, strict=False):
        if cid is None or cid not in ids:
            continue
        p = precision[:, ids.index(cid)]
        if (p > -1).any():
            curves.append(np.clip(p, 0, None))
            if len(names) <= 20:
                ax.plot(recall, curves[-1], linewidth=1, label=f"{name} {curves[-1].mean():.3f}")
    if curves:
        mean = np.mean(curves, axis=0)
        ax.plot(recall, mean, color="black", linewidth=2.5, label=f"all classes {mean.mean():.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall at IoU 0.5 (legend: AP50)")
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
