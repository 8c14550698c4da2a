"""ByteTrack in the runtime: the assignment solver, the Kalman filter, ids kept through a
scripted crossing and a short occlusion; synthetic tracking videos with MOTChallenge truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from vision_tasks.export.runtime import track_kalman as kf
from vision_tasks.export.runtime.track import ByteTracker, TrackerConfig

from vision_tasks.metrics.track_assign import box_iou, linear_sum_assignment, match


def _brute_force_minimum(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n > m:
        return _brute_force_minimum(cost.T)
    return min(sum(cost[i, cols[i]] for i in range(n))
               for cols in itertools.permutations(range(m), n)) if n else 0.0


def test_assignment_finds_the_least_total_cost_of_small_matrices():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n, m = rng.integers(0, 6, 2)
        cost = rng.integers(0, 5, (n, m)).astype(float) + rng.random((n, m)) * 0.01
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(n, m) and len(set(cols.tolist())) == len(cols)
        assert cost[rows, cols].sum() == pytest.approx(_brute_force_minimum(cost))


def test_match_leaves_pairs_above_the_limit_unmatched():
    cost = np.array([[0.1, 0.7], [0.7, 0.95]])
    pairs, rows, cols = match(cost, 0.8)
    assert pairs == [(0, 0)] and rows == [1] and cols == [1]  # not 0.7 + 0.7 (both allowed)
    assert match(np.zeros((0, 3)), 0.5) == ([], [], [0, 1, 2])


def test_kalman_filter_learns_a_constant_velocity():
    means, covs = kf.initiate(kf.xyah(np.array([[0, 0, 10, 20]])))
    for t in range(1, 15):
        means, covs = kf.predict(means, covs)
        means, covs = kf.update(means, covs, kf.xyah(np.array([[3 * t, 0, 3 * t + 10, 20]])))
    ahead, _ = kf.predict(means, covs)
    assert kf.xyxy(ahead)[0] == pytest.approx([45, 0, 55, 20], abs=0.5)
    assert box_iou(kf.xyxy(ahead), np.array([[45, 0, 55, 20]]))[0, 0] > 0.9


def _crossing(frame: int) -> np.ndarray:
    """Two 30 x 30 boxes of one class moving towards each other along overlapping rows:
    they overlap most at frame 20 (IoU 0.6) and have swapped sides by frame 40."""
    return np.array([[10 + 5 * frame, 50, 40 + 5 * frame, 80],
                     [210 - 5 * frame, 56, 240 - 5 * frame, 86]], float)


def test_ids_stay_with_their_objects_through_a_crossing_and_come_back_after_an_occlusion():
    tracker = ByteTracker(TrackerConfig())
    seen = []
    for frame in range(45):
        boxes, scores = _crossing(frame), np.array([0.9, 0.9])
        if 17 <= frame <= 23:
            scores[1] = 0.15  # mostly hidden behind the other: a low score (second stage)
        if frame in (19, 20):
            boxes, scores = boxes[:1], scores[:1]  # and not detected at all for two frames
        ids = tracker.update(boxes, scores, np.zeros(len(boxes), np.int64))
        seen.append(ids.tolist())
    # low-score boxes keep a track that is still followed (17, 18), not a lost one (21-23):
    # the lost track waits and takes its id back from the next confident box (24)
    assert all(seen[f] == [1, 2] for f in [*range(19), *range(24, 45)])
    assert seen[19] == seen[20] == [1]
    assert seen[21] == seen[22] == seen[23] == [1, 0]


def test_a_new_object_is_reported_from_its_second_frame_and_ids_start_at_first_id():
    tracker = ByteTracker(first_id=7)
    assert tracker.update(np.array([[0, 0, 10, 10]]), np.array([0.9]), np.array([0])).tolist() == [7]
    two = np.array([[1, 0, 11, 10], [50, 50, 60, 60]])
    assert tracker.update(two, np.array([0.9, 0.9]), np.array([0, 1])).tolist() == [7, 0]
    two += 1
    assert tracker.update(two, np.array([0.9, 0.9]), np.array([0, 1])).tolist() == [7, 8]


def test_low_scores_alone_start_no_track():
    tracker = ByteTracker()
    for _ in range(3):
        ids = tracker.update(np.array([[0, 0, 10, 10]]), np.array([0.2]), np.array([0]))
    assert ids.tolist() == [0]


def test_synth_track_writes_videos_mot_truth_and_the_same_frames_as_coco(tmp_path):
    import json

    import cv2

    from vision_tasks.cli import main

    assert main(["data", "synth", "track", str(tmp_path), "--train", "1", "--val", "1",
                 "--frames", "6", "--size", "64"]) == 0
    rows = [line.split(",") for line in
            (tmp_path / "mot" / "val" / "seq000" / "gt" / "gt.txt").read_text().splitlines()]
    frames = [int(r[0]) for r in rows]
    assert set(frames) <= set(range(1, 7)) and frames == sorted(frames)
    per_frame = {f: [int(r[1]) for r in rows if int(r[0]) == f] for f in set(frames)}
    assert all(len(ids) == len(set(ids)) for ids in per_frame.values())
    assert "seqLength=6" in (tmp_path / "mot" / "val" / "seq000" / "seqinfo.ini").read_text()
    coco = json.loads((tmp_path / "val" / "annotations.json").read_text())
    assert len(coco["images"]) == 6 and len(coco["annotations"]) == len(rows)
    first = [a["bbox"] for a in coco["annotations"] if a["image_id"] == 1]
    assert first == [[float(v) for v in r[2:6]] for r in rows if r[0] == "1"]
    capture = cv2.VideoCapture(str(tmp_path / "videos" / "val" / "seq000.avi"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 6
