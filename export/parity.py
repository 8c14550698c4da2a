"""``vision-tasks export --check``: the same images through PyTorch and onnxruntime.

The reference is always the fp32 PyTorch model (for an ``--fp16`` export too, so the check
measures what fp16 costs against the trained model). Stated tolerances (max abs difference
over all images and elements):

==================================  ===============  ==================
output                              fp32             fp16
==================================  ===============  ==================
probabilities (scores, masks)       1e-4             1e-2
boxes, in input pixels              1e-4 x side      5e-3 x side
integers (labels, num_detections)   exact            reported only
==================================  ===============  ==================

``side`` is the larger input side (64 px: 0.0064 px fp32, 0.32 px fp16).

Detections (detect, segment) are compared as sets, not slot by slot: two runtimes may break
an exact tie between scores differently (which of two equal-score boxes NMS keeps, which
candidates make the top-k cut), which moves detections between slots or swaps a marginal
one for another. So each image's PyTorch detections are matched to onnxruntime's by label
and box (within the box tolerance, closest score first); boxes, scores and masks must agree
within the tolerances above on every matched pair, and at most ``UNMATCHED_TOL`` of the
detections (2 % fp32, 10 % fp16) may be left without a partner (reported as
``unmatched``). Masks are compared away from their box's edges: a mask cell whose centre
lies within the box tolerance of an edge may legitimately fall on either side of the crop.

An ``--int8`` file is checked in the task's metric instead (:func:`check_int8_metrics`):
``vision-tasks val`` of it and of the fp32 file on the same ``data.val``, each checked
metric at most :data:`INT8_METRIC_TOL` (one point) lower.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vision_tasks.config import Config
from vision_tasks.contract import OUTPUT_SEPARATOR
from vision_tasks.data.bad_images import Unreadable
from vision_tasks.errors import VisionTasksError
from vision_tasks.grid import cell_centres
from vision_tasks.imaging import letterbox
from vision_tasks.task_api import Task

from .onnx_eval import evaluate_onnx
from .runtime.providers import create_session

PROBABILITY_TOL = {"fp32": 1e-4, "fp16": 1e-2}
BOX_TOL_PER_PIXEL = {"fp32": 1e-4, "fp16": 5e-3}
UNMATCHED_TOL = {"fp32": 0.02, "fp16": 0.10}
CHECK_IMAGES = 16


class ExportCheckError(VisionTasksError):
    """The exported graph does not reproduce the PyTorch model within tolerance."""


@dataclass
class OutputDiff:
    name: str
    max_abs_diff: float
    tolerance: float | None  # None: reported only

    @property
    def ok(self) -> bool:
        return self.tolerance is None or self.max_abs_diff <= self.tolerance


@dataclass
class ParityReport:
    """Max abs differences per output on ``images`` images of kind ``source``."""

    images: int
    source: str  # e.g. "16 images of data.val" or "16 synthetic letterboxed arrays"
    precision: str  # "fp32" | "fp16"
    provider: str
    diffs: list[OutputDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs)

    def summary(self) -> str:
        def verdict(d: OutputDiff) -> str:
            if d.tolerance is None:
                return "(reported only)"
            return f"{'<=' if d.ok else '>'} {d.tolerance:.0e}"

        parts = ", ".join(f"{d.name} {d.max_abs_diff:.2e} {verdict(d)}" for d in self.diffs)
        return (f"max |PyTorch fp32 - onnxruntime {self.precision}|: {parts} "
                f"on {self.source} ({self.provider})")


def check_images(cfg: Config, task: Task, class_names: list[str],
                 n: int = CHECK_IMAGES) -> tuple[np.ndarray, str]:
    """Up to ``n`` letterboxed images of ``data.val`` as uint8 ``[n, S, S, 3]``, or, when the
    set cannot be read here, ``n`` synthetic ones (noise of varied aspect ratios, letterboxed
    so that the padding is exercised too). Returns the images and a description."""
    try:
        dataset = task.build_dataset(cfg, "val", train=False, class_names=class_names)
        count = min(n, len(dataset))
        indices = np.linspace(0, len(dataset) - 1, count).round().astype(int)
        items = [dataset[int(i)] for i in indices]
        readable = [item[0] for item in items if not isinstance(item, Unreadable)]
        if readable:
            images = np.stack([image.permute(1, 2, 0).numpy() for image in readable])
            where = cfg.data.val["images"] if isinstance(cfg.data.val, dict) else cfg.data.val
            return np.ascontiguousarray(images), f"{len(readable)} images of data.val ({where})"
    except (VisionTasksError, OSError, ValueError, KeyError):
        pass  # the data set is not on this machine: synthetic inputs still test the graph
    rng = np.random.default_rng(0)
    size = cfg.data.image_size
    images = []
    for _ in range(n):
        h, w = (int(v) for v in rng.integers(size // 2, 2 * size, 2))
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        images.append(letterbox(noise, size)[0])
    return np.stack(images), f"{n} synthetic letterboxed arrays (data.val not readable here)"


@torch.no_grad()
def torch_outputs(wrapper: torch.nn.Module, images: np.ndarray) -> dict[str, np.ndarray]:
    """The export wrapper's named outputs for uint8 ``[N, H, W, 3]`` images, as numpy."""
    values = wrapper(torch.from_numpy(images))
    return {name: v.cpu().numpy() for name, v in zip(wrapper.output_names, values, strict=True)}


def _tolerance(name: str, value: np.ndarray, precision: str, side: int) -> float | None:
    if not np.issubdtype(value.dtype, np.floating):
        return 0.0 if precision == "fp32" else None
    if name == "boxes":
        return BOX_TOL_PER_PIXEL[precision] * side
    return PROBABILITY_TOL[precision]


def compare(reference: dict[str, np.ndarray], actual: dict[str, np.ndarray], precision: str,
            side: int) -> list[OutputDiff]:
    """Per-output max abs difference and its tolerance (see the module docstring); a
    multi-head model's outputs (``<head>.<output>``) are compared head by head."""
    heads = sorted({name.split(OUTPUT_SEPARATOR, 1)[0] for name in reference
                    if OUTPUT_SEPARATOR in name})
    if heads:
        diffs = []
        for head in heads:
            prefix = head + OUTPUT_SEPARATOR
            ref = {k.removeprefix(prefix): v for k, v in reference.items() if k.startswith(prefix)}
            act = {k.removeprefix(prefix): v for k, v in actual.items() if k.startswith(prefix)}
            diffs += [OutputDiff(prefix + d.name, d.max_abs_diff, d.tolerance)
                      for d in compare(ref, act, precision, side)]
        return diffs
    if "num_detections" in reference:
        return compare_detections(reference, actual, precision, side)
    diffs = []
    for name, ref in reference.items():
        got = actual[name]
        if got.shape != ref.shape:
            raise ExportCheckError(f"export check: output '{name}' has shape {got.shape} in "
                                   f"onnxruntime but {ref.shape} in PyTorch")
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
        diffs.append(OutputDiff(name, diff, _tolerance(name, ref, precision, side)))
    return diffs


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def match_detections(ref_boxes: np.ndarray, ref_labels: np.ndarray, ref_scores: np.ndarray,
                     boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                     box_tol: float) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of one image's reference detection ``i`` and actual detection ``j``:
    same label, every box coordinate within ``box_tol``; greedily in reference order, each
    taking the free partner with the closest score."""
    if not len(ref_boxes) or not len(boxes):
        return []
    box_diff = np.abs(ref_boxes[:, None].astype(np.float64) - boxes[None]).max(axis=-1)
    ok = (box_diff <= box_tol) & (ref_labels[:, None] == labels[None])
    cost = np.where(ok, np.abs(ref_scores[:, None].astype(np.float64) - scores[None]), np.inf)
    pairs = []
    for i in range(len(ref_boxes)):
        j = int(np.argmin(cost[i]))
        if np.isfinite(cost[i, j]):
            pairs.append((i, j))
            cost[:, j] = np.inf
    return pairs


def _away_from_edges(boxes: np.ndarray, shape: tuple[int, int], side: int, margin: float
                     ) -> np.ndarray:
    """bool ``[D, Hm, Wm]``: mask cells whose centre is more than ``margin`` input pixels
    from every edge of its detection's box (``boxes`` ``[D, 4]`` input pixels; the mask
    grid spans the square ``side`` x ``side`` input)."""
    hm, wm = shape
    xs = cell_centres(np.arange(wm), side / wm)
    ys = cell_centres(np.arange(hm), side / hm)
    near_x = (np.abs(xs[None] - boxes[:, 0:1]) <= margin) | (np.abs(xs[None] - boxes[:, 2:3]) <= margin)
    near_y = (np.abs(ys[None] - boxes[:, 1:2]) <= margin) | (np.abs(ys[None] - boxes[:, 3:4]) <= margin)
    return ~(near_y[:, :, None] | near_x[:, None, :])


def compare_detections(reference: dict[str, np.ndarray], actual: dict[str, np.ndarray],
                       precision: str, side: int) -> list[OutputDiff]:
    """Set-wise comparison of detection outputs (see the module docstring)."""
    for name, ref in reference.items():
        if actual[name].shape != ref.shape:
            raise ExportCheckError(f"export check: output '{name}' has shape {actual[name].shape} "
                                   f"in onnxruntime but {ref.shape} in PyTorch")
    box_tol = BOX_TOL_PER_PIXEL[precision] * side
    floats = [n for n in ("boxes", "scores", "masks") if n in reference]
    worst = dict.fromkeys(floats, 0.0)
    total = unmatched = 0
    for i in range(len(reference["num_detections"])):
        n, m = int(reference["num_detections"][i]), int(actual["num_detections"][i])
        pairs = match_detections(reference["boxes"][i, :n], reference["labels"][i, :n],
                                 reference["scores"][i, :n], actual["boxes"][i, :m],
                                 actual["labels"][i, :m], actual["scores"][i, :m], box_tol)
        total += max(n, m)
        unmatched += max(n, m) - len(pairs)
        if pairs:
            r, a = (np.array(ix) for ix in zip(*pairs, strict=True))
            for name in ("boxes", "scores"):
                worst[name] = max(worst[name], _max_diff(reference[name][i, r], actual[name][i, a]))
            if "masks" in reference:
                stable = _away_from_edges(reference["boxes"][i, r], reference["masks"].shape[2:],
                                          side, box_tol)
                diff = np.abs(reference["masks"][i, r].astype(np.float64) - actual["masks"][i, a])
                worst["masks"] = max(worst["masks"], float(np.max(diff * stable, initial=0.0)))
    diffs = [OutputDiff(name, worst[name], _tolerance(name, reference[name], precision, side))
             for name in floats]
    counts = _max_diff(reference["num_detections"], actual["num_detections"])
    diffs.append(OutputDiff("num_detections", counts, None))
    diffs.append(OutputDiff("unmatched", unmatched / max(total, 1), UNMATCHED_TOL[precision]))
    return diffs


def check_parity(model_bytes: bytes, reference: torch.nn.Module, images: np.ndarray, source: str,
                 precision: str) -> ParityReport:
    """Run ``images`` through the serialized ONNX model (onnxruntime, CPU) and the fp32
    ``reference`` wrapper; raise :class:`ExportCheckError` naming the worst output when a
    tolerance is exceeded."""
    session, info = create_session(model_bytes, "cpu")
    names = [o.name for o in session.get_outputs()]
    # Batch 1 and the whole set: both ends of the dynamic batch dimension.
    actual_rows = [session.run(names, {"images": images[i:i + 1]}) for i in range(min(2, len(images)))]
    actual = dict(zip(names, session.run(names, {"images": images}), strict=True))
    expected = torch_outputs(reference, images)
    diffs = compare(expected, actual, precision, max(images.shape[1:3]))
    for i, row in enumerate(actual_rows):  # batch-1 runs must agree with the batched run
        row_diffs = compare({k: v[i:i + 1] for k, v in expected.items()},
                            dict(zip(names, row, strict=True)), precision, max(images.shape[1:3]))
        diffs = [d if d.max_abs_diff >= r.max_abs_diff else r
                 for d, r in zip(diffs, row_diffs, strict=True)]
    report = ParityReport(len(images), source, precision, info.provider, diffs)
    if not report.ok:
        worst = next(d for d in report.diffs if not d.ok)
        what = (f"{worst.max_abs_diff:.1%} of the detections have no partner (tolerance "
                f"{worst.tolerance:.0%})" if worst.name == "unmatched" else
                f"output '{worst.name}' differs by up to {worst.max_abs_diff:.3e} (tolerance "
                f"{worst.tolerance:.0e})")
        raise ExportCheckError(f"export check failed: {what} between PyTorch and onnxruntime "
                               f"on {source}; the file was not written. " + report.summary())
    return report


# --- INT8: compared in the task's metric ---------------------------------------------------

INT8_METRIC_TOL = 0.01
"""``--int8 --check``: each checked metric of the INT8 file may be at most this much (one
point: 0.01 of top-1, corloc or mAP) below the fp32 file's, both scored by ``vision-tasks
val`` on the same ``data.val``. An integer network cannot match a float one element-wise,
so the element tolerances above do not apply to it."""
INT8_CHECKED_METRICS = ("top1", "corloc", "box_map", "mask_map")
"""Checked when the task reports them (a multi-head file: every head's), with the task's
primary metric; the other scalar metrics are reported only."""


@dataclass
class MetricDiff:
    name: str
    fp32: float
    int8: float
    tolerance: float | None  # None: reported only

    @property
    def ok(self) -> bool:
        return self.tolerance is None or self.fp32 - self.int8 <= self.tolerance + 1e-9


@dataclass
class MetricReport:
    """``vision-tasks val`` of the fp32 and the INT8 file on the same data."""

    source: str
    diffs: list[MetricDiff] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.diffs)

    def summary(self) -> str:
        checked = [d for d in self.diffs if d.tolerance is not None]
        parts = ", ".join(f"{d.name} {d.fp32:.4f} -> {d.int8:.4f} ({d.int8 - d.fp32:+.4f})"
                          for d in checked)
        return (f"val fp32 -> int8: {parts} (tolerance: at most {INT8_METRIC_TOL} lower) "
                f"on {self.source}")


def check_int8_metrics(float_bytes: bytes, int8_bytes: bytes, primary: str, source: str,
                       progress: bool = False) -> MetricReport:
    """Score both serialized files with ``vision-tasks val`` (onnxruntime, CPU) on the
    ``data.val`` their metadata names (``source`` describes it); raise
    :class:`ExportCheckError` naming the metric when the INT8 one is more than
    :data:`INT8_METRIC_TOL` below the fp32 one."""
    scores = {}
    with tempfile.TemporaryDirectory(prefix="vision-tasks-check-") as tmp:
        for precision, data in (("fp32", float_bytes), ("int8", int8_bytes)):
            path = Path(tmp) / f"{precision}.onnx"
            path.write_bytes(data)
            try:
                metrics, _ = evaluate_onnx(path, [], None, "cpu", progress)
            except (VisionTasksError, OSError, ValueError, KeyError) as err:
                raise ExportCheckError(f"export check: the INT8 check scores data.val ({source}) "
                                       f"and cannot read it here ({err}); export without "
                                       "--check, or run where the data is") from None
            scores[precision] = {k: v for k, v in metrics.items() if isinstance(v, float)}
    checked = (*INT8_CHECKED_METRICS, primary)
    diffs = [MetricDiff(name, value, scores["int8"][name],
                        INT8_METRIC_TOL if name.rsplit(OUTPUT_SEPARATOR, 1)[-1] in checked else None)
             for name, value in scores["fp32"].items() if name in scores["int8"]]
    report = MetricReport(source, diffs)
    if not report.ok:
        worst = max((d for d in diffs if not d.ok), key=lambda d: d.fp32 - d.int8)
        raise ExportCheckError(f"export check failed: the INT8 file's {worst.name} is "
                               f"{worst.int8:.4f}, {worst.fp32 - worst.int8:.4f} below the fp32 "
                               f"file's {worst.fp32:.4f} (tolerance {INT8_METRIC_TOL}); the file "
                               "was not written. Try more --calibration-images or "
                               "--calibration-method percentile. " + report.summary())
    return report
