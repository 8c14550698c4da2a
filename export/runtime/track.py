"""ByteTrack (Zhang et al., ECCV 2022) in numpy: ids that follow objects across frames.

Why ByteTrack, and why written here: it needs only boxes and scores (no appearance model, so
no second network and no torch), it is the default tracker of the detectors users compare
us with, and its two steps are short: a Kalman filter (:mod:`.track_kalman`) and an optimal
assignment (:func:`vision_tasks.metrics.track_assign.match`, numpy, since the runtime has no
scipy). The published trackers that could be installed instead (Ultralytics' trackers,
supervision's ``ByteTrack``) come inside packages that pull in torch or a large stack of
their own.

Each frame (:meth:`ByteTracker.update`):

1. detections split into high (``score >= high_score``) and low (``low_score < score <
   high_score``) ones; every confirmed or lost track is moved one frame by its filter;
2. tracks are matched to the high detections on ``1 - IoU x score`` (cost below
   ``1 - match_iou``); a lost track that matches comes back with its id;
3. tracks still unmatched are matched to the low detections on ``1 - IoU`` (cost below
   ``1 - low_match_iou``): a partly hidden object whose score fell keeps its track; tracks
   unmatched after that are lost;
4. tracks born last frame (not yet confirmed) are matched to the remaining high detections
   (cost below ``1 - unconfirmed_iou``), and dropped when they miss;
5. remaining high detections scoring at least ``new_track_score`` start tracks, confirmed at
   once on a source's first frame, else when they match again on the next one;
6. a track lost for more than ``buffer_frames`` frames ends; of two tracks whose boxes
   overlap by more than ``DUPLICATE_IOU``, the younger goes.

Ids are given when a track is confirmed (so they count up without gaps), from ``first_id``.
Detections of every class are matched together, as in the paper; the track's class is its
latest detection's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from vision_tasks.metrics.track_assign import box_iou, match

from . import track_kalman as kf

DUPLICATE_IOU = 0.85


@dataclass(frozen=True)
class TrackerConfig:
    """ByteTrack's settings (defaults as in Ultralytics' ``bytetrack.yaml``).

    Attributes:
        high_score: detections at or above this take part in the first association.
        low_score: detections above this and below ``high_score`` take part in the second.
        new_track_score: an unmatched high detection at or above this starts a track.
        match_iou: least IoU x score of a first-association pair.
        low_match_iou: least IoU of a second-association pair.
        unconfirmed_iou: least IoU x score of a pair of a one-frame-old track.
        buffer_frames: frames (of those predicted) a lost track waits to come back.
    """

    high_score: float = 0.25
    low_score: float = 0.1
    new_track_score: float = 0.25
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    unconfirmed_iou: float = 0.3
    buffer_frames: int = 30

    def record(self) -> dict[str, float | int | str]:
        return {"method": "bytetrack", **asdict(self)}


TRACKED, LOST, REMOVED = "tracked", "lost", "removed"


class Track:
    """One object followed: its filter state, id (0 until confirmed), state and last frame."""

    def __init__(self, box: np.ndarray, score: float, label: int, frame: int) -> None:
        means, covs = kf.initiate(kf.xyah(box[None]))
        self.mean, self.cov = means[0], covs[0]
        self.score, self.label = score, label
        self.id = 0
        self.state = TRACKED
        self.start_frame = self.last_frame = frame

    @property
    def box(self) -> np.ndarray:
        """The filter's box ``(x1, y1, x2, y2)``."""
        return kf.xyxy(self.mean[None])[0]

    def update(self, box: np.ndarray, score: float, label: int, frame: int) -> None:
        means, covs = kf.update(self.mean[None], self.cov[None], kf.xyah(box[None]))
        self.mean, self.cov = means[0], covs[0]
        self.score, self.label, self.state, self.last_frame = score, label, TRACKED, frame


class ByteTracker:
    """Tracks of one source; :meth:`update` once per frame, in order.

    Args:
        config: the settings.
        first_id: the id the first confirmed track gets (``--resume`` continues a source's
            numbering after the ids already written).
    """

    def __init__(self, config: TrackerConfig | None = None, first_id: int = 1) -> None:
        self.config = config or TrackerConfig()
        self.next_id = first_id
        self.frame = 0
        self.tracked: list[Track] = []  # confirmed and new tracks seen in the last frame
        self.lost: list[Track] = []

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """One frame's detections (float ``[n, 4]`` boxes ``(x1, y1, x2, y2)`` in pixels,
        ``[n]`` scores, ``[n]`` labels) -> int64 ``[n]`` the track id of each detection, 0
        for a detection no confirmed track took this frame."""
        cfg = self.config
        self.frame += 1
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        labels = np.asarray(labels).reshape(-1)
        ids = np.zeros(len(boxes), np.int64)
        high = np.flatnonzero(scores >= cfg.high_score)
        low = np.flatnonzero((scores > cfg.low_score) & (scores < cfg.high_score))

        new = [t for t in self.tracked if t.id == 0]
        pool = [t for t in self.tracked if t.id > 0] + self.lost
        self._predict(pool)
        taken: dict[int, Track] = {}  # detection index -> track

        pairs, rest, free_high = self._associate(pool, high, boxes, scores, 1 - cfg.match_iou,
                                                 fuse=True)
        taken.update(pairs)
        still = [pool[i] for i in rest if pool[i].state == TRACKED]
        pairs, rest, _ = self._associate(still, low, boxes, scores, 1 - cfg.low_match_iou,
                                         fuse=False)
        taken.update(pairs)
        for i in rest:
            still[i].state = LOST
        pairs, rest, free_high = self._associate(new, free_high, boxes, scores,
                                                 1 - cfg.unconfirmed_iou, fuse=True)
        taken.update(pairs)
        for i in rest:
            new[i].state = REMOVED

        for d, track in taken.items():
            track.update(boxes[d], float(scores[d]), int(labels[d]), self.frame)
            if track.id == 0:
                track.id = self._new_id()
        born = [Track(boxes[d], float(scores[d]), int(labels[d]), self.frame)
                for d in free_high if scores[d] >= cfg.new_track_score]
        for track in born:
            if self.frame == 1:
                track.id = self._new_id()
        for track in self.lost:
            if track.state == LOST and self.frame - track.last_frame > cfg.buffer_frames:
                track.state = REMOVED
        everyone = self.tracked + self.lost + born
        self.tracked = [t for t in everyone if t.state == TRACKED]
        self.lost = [t for t in everyone if t.state == LOST]
        self._drop_duplicates()
        for d, track in taken.items():
            if track.state == TRACKED:
                ids[d] = track.id
        if self.frame == 1:
            for d, track in zip([d for d in free_high if scores[d] >= cfg.new_track_score],
                                born, strict=True):
                ids[d] = track.id
        return ids

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _predict(self, tracks: list[Track]) -> None:
        if not tracks:
            return
        means = np.stack([t.mean for t in tracks])
        for i, t in enumerate(tracks):
            if t.state != TRACKED:
                means[i, 7] = 0.0  # a lost track's height stops changing
        means, covs = kf.predict(means, np.stack([t.cov for t in tracks]))
        for t, mean, cov in zip(tracks, means, covs, strict=True):
            t.mean, t.cov = mean, cov

    @staticmethod
    def _associate(tracks: list[Track], dets: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                   limit: float, fuse: bool) -> tuple[dict[int, Track], list[int], np.ndarray]:
        """Match ``tracks`` to the detections ``dets`` (indices); returns {detection: track},
        the unmatched track positions, and the unmatched detection indices."""
        if not tracks or not len(dets):
            return {}, list(range(len(tracks))), dets
        iou = box_iou(np.stack([t.box for t in tracks]), boxes[dets])
        cost = 1.0 - (iou * scores[dets][None, :] if fuse else iou)
        pairs, free_tracks, free_dets = match(cost, limit)
        return ({int(dets[d]): tracks[t] for t, d in pairs}, free_tracks,
                dets[np.asarray(free_dets, np.int64)])

    def _drop_duplicates(self) -> None:
        if not self.tracked or not self.lost:
            return
        iou = box_iou(np.stack([t.box for t in self.tracked]), np.stack([t.box for t in self.lost]))
        drop_tracked, drop_lost = set(), set()
        for i, j in zip(*np.nonzero(iou > DUPLICATE_IOU), strict=True):
            a, b = self.tracked[i], self.lost[j]
            if self.frame - a.start_frame > self.frame - b.start_frame:
                drop_lost.add(j)
            else:
                drop_tracked.add(i)
        for i in drop_tracked:
            self.tracked[i].state = REMOVED
        self.tracked = [t for i, t in enumerate(self.tracked) if i not in drop_tracked]
        self.lost = [t for j, t in enumerate(self.lost) if j not in drop_lost]


def make_tracker(config: TrackerConfig) -> Callable[[int], ByteTracker]:
    """A factory of fresh trackers, one per source: ``factory(first_id)``."""
    return lambda first_id: ByteTracker(config, first_id)
