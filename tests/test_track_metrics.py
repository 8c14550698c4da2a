"""Tracking metrics (vision_tasks.metrics.track) against the reference implementations on
small random sequences: py-motmetrics for MOTA, IDF1 and id switches (a dev dependency),
TrackEval for HOTA, MOTA and IDF1 where it is installed (its package needs the full
opencv-python, so it is not a dependency: the test is skipped without it)."""

from __future__ import annotations

import numpy as np
import pytest

from vision_tasks.metrics.track import evaluate_sequence
from vision_tasks.metrics.track_assign import box_iou


def _sequence(seed: int, frames: int = 12) -> tuple[dict, dict]:
    """Three objects drifting with noise; a tracker that misses some, adds false boxes and
    swaps two ids halfway."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 100, (3, 2))
    speed = rng.uniform(-4, 4, (3, 2))
    gt, tracker = {}, {}
    for f in range(1, frames + 1):
        centres = start + speed * f
        boxes = np.concatenate([centres - 10, centres + 10], 1)
        present = rng.random(3) > 0.1
        gt[f] = (np.arange(1, 4)[present], boxes[present])
        noisy = boxes + rng.normal(0, 3, boxes.shape)
        ids = np.array([11, 12, 13]) if f <= frames // 2 else np.array([12, 11, 13])
        seen = rng.random(3) > 0.2
        extra = rng.random() < 0.3
        t_ids = np.concatenate([ids[seen], [99 + f] if extra else []]).astype(np.int64)
        corner = rng.uniform(0, 100, 2)
        false_box = np.concatenate([corner, corner + 15])[None] if extra else np.zeros((0, 4))
        t_boxes = np.concatenate([noisy[seen], false_box])
        tracker[f] = (t_ids, t_boxes)
    return gt, tracker


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mota_idf1_and_id_switches_agree_with_py_motmetrics(seed):
    mm = pytest.importorskip("motmetrics")
    gt, tracker = _sequence(seed)
    accumulator = mm.MOTAccumulator(auto_id=True)
    for f in sorted(gt):
        distances = 1 - box_iou(gt[f][1], tracker[f][1])
        distances[distances > 0.5] = np.nan  # motmetrics: no pair below IoU 0.5
        accumulator.update(gt[f][0].tolist(), tracker[f][0].tolist(), distances)
    ref = mm.metrics.create().compute(accumulator, metrics=["mota", "idf1", "num_switches"])
    ours = evaluate_sequence(gt, tracker).summary()
    assert ours["MOTA"] == pytest.approx(float(ref["mota"].iloc[0]), abs=1e-9)
    assert ours["IDF1"] == pytest.approx(float(ref["idf1"].iloc[0]), abs=1e-9)
    assert ours["IDSW"] == int(ref["num_switches"].iloc[0])
    assert ours["IDSW"] >= 1  # the scripted swap is seen


def _trackeval_data(gt: dict, tracker: dict) -> dict:
    frames = sorted(set(gt) | set(tracker))
    gt_index = {i: k for k, i in enumerate(sorted({int(i) for f in frames for i in gt[f][0]}))}
    tr_index = {i: k for k, i in enumerate(sorted({int(i) for f in frames for i in tracker[f][0]}))}
    return {"num_timesteps": len(frames),
            "num_gt_ids": len(gt_index), "num_tracker_ids": len(tr_index),
            "num_gt_dets": sum(len(gt[f][0]) for f in frames),
            "num_tracker_dets": sum(len(tracker[f][0]) for f in frames),
            "gt_ids": [np.array([gt_index[int(i)] for i in gt[f][0]], int) for f in frames],
            "tracker_ids": [np.array([tr_index[int(i)] for i in tracker[f][0]], int)
                            for f in frames],
            "similarity_scores": [box_iou(gt[f][1], tracker[f][1]) for f in frames]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hota_mota_idf1_agree_with_trackeval(seed):
    metrics = pytest.importorskip("trackeval.metrics")
    gt, tracker = _sequence(seed)
    data = _trackeval_data(gt, tracker)
    ours = evaluate_sequence(gt, tracker).summary()
    hota = metrics.HOTA().eval_sequence(data)
    clear = metrics.CLEAR().eval_sequence(data)
    identity = metrics.Identity().eval_sequence(data)
    for ours_key, ref in (("HOTA", hota["HOTA"].mean()), ("DetA", hota["DetA"].mean()),
                          ("AssA", hota["AssA"].mean()), ("LocA", hota["LocA"].mean()),
                          ("MOTA", clear["MOTA"]), ("MOTP", clear["MOTP"]),
                          ("IDF1", identity["IDF1"])):
        assert ours[ours_key] == pytest.approx(float(ref), abs=1e-9), ours_key
    assert ours["IDSW"] == clear["IDSW"]


def test_a_perfect_tracker_scores_one_and_an_empty_one_zero():
    gt, _ = _sequence(3)
    perfect = evaluate_sequence(gt, gt).summary()
    assert perfect["HOTA"] == pytest.approx(1.0) and perfect["MOTA"] == 1.0
    assert perfect["IDF1"] == 1.0 and perfect["IDSW"] == 0
    empty = evaluate_sequence(gt, {}).summary()
    assert empty["HOTA"] == 0.0 and empty["MOTA"] == 0.0 and empty["FN"] == empty["GT_boxes"]


def test_track_eval_scores_the_ground_truth_itself_as_perfect_and_names_missing_results(
        tmp_path, capsys):
    import json
    import shutil

    from vision_tasks.cli import main

    assert main(["data", "synth", "track", str(tmp_path / "set"), "--train", "0", "--val", "2",
                 "--frames", "5", "--size", "64"]) == 0
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(tmp_path / "set" / "mot" / "val" / "seq000" / "gt" / "gt.txt",
                results / "seq000.txt")
    assert main(["track-eval", str(tmp_path / "set" / "mot" / "val"), str(results),
                 "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "no results for seq001" in out and "COMBINED" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["sequences"]["seq000"]["HOTA"] == pytest.approx(1.0)
    assert metrics["sequences"]["seq001"]["MOTA"] == 0.0
    (results / "seq001.txt").write_text("1,2,not,a,box\n")
    assert main(["track-eval", str(tmp_path / "set" / "mot" / "val"), str(results)]) == 2
    assert "seq001.txt:1: not a MOTChallenge line" in capsys.readouterr().err
