"""Multi-object tracking metrics: HOTA (Luiten et al., IJCV 2021), CLEAR MOT's MOTA
(Bernardin & Stiefelhagen 2008) and IDF1 (Ristani et al. 2016), in numpy.

They follow the definitions as TrackEval (the MOTChallenge's official evaluation code)
computes them, step for step: MOTA and IDF1 match boxes at IoU >= 0.5, MOTA keeping last
frame's pairs where it can (an id switch is a ground-truth object matched to another
tracker id than last time it was matched); IDF1 is the best one-to-one match of whole
ground-truth and tracker trajectories; HOTA is averaged over IoU thresholds 0.05 to 0.95
(``ALPHAS``), each frame matched to maximise IoU weighted by how well the two trajectories
align over the whole sequence. ``tests/test_track_metrics.py`` checks them against
py-motmetrics (MOTA, IDF1, id switches) and TrackEval (HOTA) where those are installed.

Why our own code: TrackEval's package depends on the full ``opencv-python`` (which clashes
with the ``opencv-python-headless`` that vision-tasks installs) and on matplotlib and scipy;
py-motmetrics has no HOTA. The MOTChallenge preprocessing of distractor classes (boxes of
tracked objects matched to a distractor are removed) is not done: ground-truth rows marked
0 in the "consider" column are simply dropped, which is the same on sets without
distractors (ours, and any set whose ground truth holds only the evaluated class).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .track_assign import box_iou, linear_sum_assignment

ALPHAS = np.arange(0.05, 0.99, 0.05)  # HOTA's IoU thresholds: 0.05, 0.10, ..., 0.95
MATCH_IOU = 0.5  # MOTA and IDF1
_EPS = np.finfo(float).eps

Frames = Mapping[int, tuple[np.ndarray, np.ndarray]]
"""frame number -> (ids int ``[n]``, boxes float ``[n, 4]`` ``(x1, y1, x2, y2)``)."""


@dataclass
class SequenceCounts:
    """What the metrics of one or more sequences are computed from (sums over frames).

    Attributes:
        hota_tp, hota_fn, hota_fp: float ``[len(ALPHAS)]`` detections matched / missed /
            extra at each HOTA threshold.
        ass_a, ass_re, ass_pr: ``[len(ALPHAS)]`` association accuracy, recall, precision,
            each weighted by ``hota_tp`` (so sequences combine by summing).
        loc_sum: ``[len(ALPHAS)]`` summed IoU of the matched pairs.
        tp, fn, fp, id_switches: CLEAR MOT counts at IoU 0.5.
        iou_sum: summed IoU of CLEAR's matched pairs (MOTP).
        idtp, idfn, idfp: identity counts of IDF1.
        gt_boxes, tracker_boxes, gt_ids, tracker_ids: totals.
    """

    hota_tp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    hota_fn: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    hota_fp: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_a: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_re: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    ass_pr: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    loc_sum: np.ndarray = field(default_factory=lambda: np.zeros(len(ALPHAS)))
    tp: int = 0
    fn: int = 0
    fp: int = 0
    id_switches: int = 0
    iou_sum: float = 0.0
    idtp: float = 0.0
    idfn: float = 0.0
    idfp: float = 0.0
    gt_boxes: int = 0
    tracker_boxes: int = 0
    gt_ids: int = 0
    tracker_ids: int = 0

    def __add__(self, other: SequenceCounts) -> SequenceCounts:
        return SequenceCounts(**{name: getattr(self, name) + getattr(other, name)
                                 for name in self.__dataclass_fields__})

    def summary(self) -> dict[str, float]:
        """The metrics: HOTA, DetA, AssA, LocA, DetRe, DetPr, AssRe, AssPr (means over
        ``ALPHAS``), MOTA, MOTP, IDF1, IDP, IDR, and the counts."""
        tp = self.hota_tp
        det_a = tp / np.maximum(1, tp + self.hota_fn + self.hota_fp)
        ass = {k: v / np.maximum(1, tp) for k, v in
               (("AssA", self.ass_a), ("AssRe", self.ass_re), ("AssPr", self.ass_pr))}
        hota = np.sqrt(det_a * ass["AssA"])
        out = {"HOTA": hota.mean(), "DetA": det_a.mean(), "AssA": ass["AssA"].mean(),
               "DetRe": (tp / np.maximum(1, tp + self.hota_fn)).mean(),
               "DetPr": (tp / np.maximum(1, tp + self.hota_fp)).mean(),
               "AssRe": ass["AssRe"].mean(), "AssPr": ass["AssPr"].mean(),
               "LocA": (np.maximum(1e-10, self.loc_sum) / np.maximum(1e-10, tp)).mean(),
               "MOTA": (self.tp - self.fp - self.id_switches) / max(1, self.tp + self.fn),
               "MOTP": self.iou_sum / max(1, self.tp),
               "IDF1": self.idtp / max(1.0, self.idtp + 0.5 * self.idfp + 0.5 * self.idfn),
               "IDP": self.idtp / max(1.0, self.idtp + self.idfp),
               "IDR": self.idtp / max(1.0, self.idtp + self.idfn)}
        out = {k: float(v) for k, v in out.items()}
        out.update(IDSW=self.id_switches, TP=self.tp, FN=self.fn, FP=self.fp,
                   GT_boxes=self.gt_boxes, GT_ids=self.gt_ids, tracker_ids=self.tracker_ids)
        return out


def _dense(frames: list[int], data: Frames) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Per frame: ids renumbered 0..n-1 over the sequence, and boxes."""
    all_ids = sorted({int(i) for f in frames if f in data for i in data[f][0]})
    index = {i: k for k, i in enumerate(all_ids)}
    ids, boxes = [], []
    for f in frames:
        got = data.get(f)
        ids.append(np.array([index[int(i)] for i in got[0]], np.int64) if got is not None
                   else np.zeros(0, np.int64))
        boxes.append(np.asarray(got[1], np.float64).reshape(-1, 4) if got is not None
                     else np.zeros((0, 4)))
    return ids, boxes, len(all_ids)


def evaluate_sequence(gt: Frames, tracker: Frames) -> SequenceCounts:
    """The counts of one sequence: ground truth and tracker output, frame by frame."""
    frames = sorted(set(gt) | set(tracker))
    gt_ids, gt_boxes, n_gt = _dense(frames, gt)
    tr_ids, tr_boxes, n_tr = _dense(frames, tracker)
    sims = [box_iou(g, t) for g, t in zip(gt_boxes, tr_boxes, strict=True)]
    counts = SequenceCounts(gt_boxes=sum(map(len, gt_ids)), tracker_boxes=sum(map(len, tr_ids)),
                            gt_ids=n_gt, tracker_ids=n_tr)
    _hota(counts, gt_ids, tr_ids, sims, n_gt, n_tr)
    _clear(counts, gt_ids, tr_ids, sims, n_gt)
    _identity(counts, gt_ids, tr_ids, sims, n_gt, n_tr)
    return counts


def _hota(c: SequenceCounts, gt_ids: list[np.ndarray], tr_ids: list[np.ndarray],
          sims: list[np.ndarray], n_gt: int, n_tr: int) -> None:
    potential = np.zeros((n_gt, n_tr))
    gt_count, tr_count = np.zeros((n_gt, 1)), np.zeros((1, n_tr))
    for g, t, sim in zip(gt_ids, tr_ids, sims, strict=True):
        denom = sim.sum(0, keepdims=True) + sim.sum(1, keepdims=True) - sim
        sim_iou = np.divide(sim, denom, out=np.zeros_like(sim), where=denom > _EPS)
        potential[g[:, None], t[None, :]] += sim_iou
        gt_count[g] += 1
        tr_count[0, t] += 1
    alignment = potential / np.maximum(_EPS, gt_count + tr_count - potential)
    matches = np.zeros((len(ALPHAS), n_gt, n_tr))
    for g, t, sim in zip(gt_ids, tr_ids, sims, strict=True):
        if not len(g) or not len(t):
            c.hota_fn += len(g)
            c.hota_fp += len(t)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], t[None, :]] * sim))
        for a, alpha in enumerate(ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            r, k = rows[ok], cols[ok]
            c.hota_tp[a] += len(r)
            c.hota_fn[a] += len(g) - len(r)
            c.hota_fp[a] += len(t) - len(r)
            c.loc_sum[a] += sim[r, k].sum()
            matches[a, g[r], t[k]] += 1
    for a in range(len(ALPHAS)):
        m = matches[a]
        c.ass_a[a] = (m * m / np.maximum(1, gt_count + tr_count - m)).sum()
        c.ass_re[a] = (m * m / np.maximum(1, gt_count)).sum()
        c.ass_pr[a] = (m * m / np.maximum(1, tr_count)).sum()


def _clear(c: SequenceCounts, gt_ids: list[np.ndarray], tr_ids: list[np.ndarray],
           sims: list[np.ndarray], n_gt: int) -> None:
    last_match = np.full(n_gt, np.nan)  # the tracker id each object was last matched to
    previous = np.full(n_gt, np.nan)  # ... in the previous frame only
    for g, t, sim in zip(gt_ids, tr_ids, sims, strict=True):
        if not len(g) or not len(t):
            c.fn += len(g)
            c.fp += len(t)
            previous[:] = np.nan
            continue
        score = 1000.0 * (t[None, :] == previous[g][:, None]) + sim
        score[sim < MATCH_IOU - _EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > _EPS
        rows, cols = rows[ok], cols[ok]
        matched_gt, matched_tr = g[rows], t[cols]
        before = last_match[matched_gt]
        c.id_switches += int((~np.isnan(before) & (matched_tr != before)).sum())
        last_match[matched_gt] = matched_tr
        previous[:] = np.nan
        previous[matched_gt] = matched_tr
        c.tp += len(rows)
        c.fn += len(g) - len(rows)
        c.fp += len(t) - len(rows)
        c.iou_sum += float(sim[rows, cols].sum())


def _identity(c: SequenceCounts, gt_ids: list[np.ndarray], tr_ids: list[np.ndarray],
              sims: list[np.ndarray], n_gt: int, n_tr: int) -> None:
    potential = np.zeros((n_gt, n_tr))
    gt_count, tr_count = np.zeros(n_gt), np.zeros(n_tr)
    for g, t, sim in zip(gt_ids, tr_ids, sims, strict=True):
        hit = np.nonzero(sim >= MATCH_IOU - _EPS)
        potential[g[hit[0]], t[hit[1]]] += 1
        gt_count[g] += 1
        tr_count[t] += 1
    size = n_gt + n_tr
    if size == 0:
        return
    fn = np.zeros((size, size))
    fp = np.zeros((size, size))
    fp[n_gt:, :n_tr] = 1e10
    fn[:n_gt, n_tr:] = 1e10
    fn[np.arange(n_gt), n_tr + np.arange(n_gt)] = gt_count
    fp[n_gt + np.arange(n_tr), np.arange(n_tr)] = tr_count
    fn[:n_gt, :n_tr] = gt_count[:, None] - potential
    fp[:n_gt, :n_tr] = tr_count[None, :] - potential
    rows, cols = linear_sum_assignment(fn + fp)
    c.idfn += float(fn[rows, cols].sum())
    c.idfp += float(fp[rows, cols].sum())
    c.idtp += float(gt_count.sum() - fn[rows, cols].sum())
