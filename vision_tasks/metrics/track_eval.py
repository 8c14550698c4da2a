"""``vision-tasks track-eval GT RESULTS``: HOTA, MOTA, IDF1 of tracker output in the
MOTChallenge text format against MOTChallenge ground truth (:mod:`vision_tasks.metrics.track`).

GT is a folder of sequences (``GT/<seq>/gt/gt.txt``, as ``vision-tasks data synth track``
writes under ``DIR/mot/<split>`` and as MOTChallenge sets ship) or one sequence folder.
RESULTS is a folder of ``<seq>.txt`` files (``vision-tasks predict --track`` writes them
under ``OUT/mot``). Lines are ``frame,id,x,y,w,h,conf,...``; ground-truth lines whose
``conf`` is 0 are not evaluated (MOTChallenge's "ignore" mark). A sequence without results
counts as all missed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vision_tasks.errors import VisionTasksError

from .track import Frames, SequenceCounts, evaluate_sequence

SHOWN = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN", "GT_ids")


def read_mot(path: Path, ground_truth: bool) -> Frames:
    """``frame -> (ids, boxes x1 y1 x2 y2)`` of a MOTChallenge text file.

    Raises:
        VisionTasksError: a line that is not ``frame,id,x,y,w,h,...`` numbers.
    """
    rows: dict[int, list[tuple[int, list[float]]]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise VisionTasksError(f"{path}: not UTF-8 text (byte {err.start}); pass a MOTChallenge "
                               "text file") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            frame, track = int(float(parts[0])), int(float(parts[1]))
            x, y, w, h = (float(v) for v in parts[2:6])
            consider = float(parts[6]) if len(parts) > 6 else 1.0
        except (ValueError, IndexError, OverflowError):  # OverflowError: int(inf)
            raise VisionTasksError(f"{path}:{number}: not a MOTChallenge line "
                                   f"(frame,id,x,y,w,h,conf,...): {line[:60]!r}; check the "
                                   "file's format") from None
        if ground_truth and consider == 0:
            continue
        rows.setdefault(frame, []).append((track, [x, y, x + w, y + h]))
    return {f: (np.array([r[0] for r in v], np.int64), np.array([r[1] for r in v], np.float64))
            for f, v in rows.items()}


def find_sequences(gt: Path) -> dict[str, Path]:
    """``{sequence name: its gt.txt}`` under ``gt``."""
    if (gt / "gt" / "gt.txt").is_file():
        return {gt.name: gt / "gt" / "gt.txt"}
    found = {p.parent.parent.name: p for p in sorted(gt.glob("*/gt/gt.txt"))}
    if not found:
        raise VisionTasksError(f"{gt}: no <sequence>/gt/gt.txt below it; pass a MOTChallenge "
                               "split folder (e.g. DIR/mot/val of `vision-tasks data synth "
                               "track DIR`)")
    return found


def evaluate_folders(gt: Path, results: Path) -> tuple[dict[str, dict], dict, list[str]]:
    """Per-sequence metrics, the combined metrics (counts summed over sequences, as
    TrackEval combines them) and the names of sequences without results."""
    if not results.is_dir():
        raise VisionTasksError(f"{results}: no such folder; pass the folder of <sequence>.txt "
                               "tracker results (OUT/mot of `vision-tasks predict --track`)")
    per_sequence, missing = {}, []
    total = SequenceCounts()
    for name, gt_file in find_sequences(gt).items():
        result = results / f"{name}.txt"
        if not result.is_file():
            missing.append(name)
        counts = evaluate_sequence(read_mot(gt_file, True),
                                   read_mot(result, False) if result.is_file() else {})
        per_sequence[name] = counts.summary()
        total = total + counts
    return per_sequence, total.summary(), missing


def add_track_eval(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("track-eval", help="HOTA, MOTA, IDF1 of tracks (MOTChallenge format)")
    p.add_argument("gt", help="ground truth: a folder of <seq>/gt/gt.txt (or one <seq> folder)")
    p.add_argument("results", help="a folder of <seq>.txt tracker results (OUT/mot of predict "
                                   "--track)")
    p.add_argument("--json", dest="json_path", default=None,
                   help="also write the metrics to this file")
    p.set_defaults(func=cmd_track_eval)


def _check_json_out(path: Path) -> None:
    """``--json`` replaces an earlier track-eval's file only, never another file of the user's."""
    if path.is_dir():
        raise VisionTasksError(f"--json {path}: is a folder; pass the .json file to write")
    if not path.exists():
        return
    try:
        ours = set(json.loads(path.read_text(encoding="utf-8"))) == {"combined", "sequences"}
    except (ValueError, TypeError, OSError):  # not JSON, not UTF-8, not a mapping
        ours = False
    if not ours:
        raise VisionTasksError(f"--json {path}: exists and is not a track-eval result; choose "
                               "another file (track-eval replaces only its own)")


def cmd_track_eval(args: argparse.Namespace) -> int:
    if args.json_path:
        _check_json_out(Path(args.json_path))
    per_sequence, combined, missing = evaluate_folders(Path(args.gt), Path(args.results))
    for name in missing:
        print(f"track-eval: no results for {name} ({Path(args.results) / (name + '.txt')}); "
              "counted as all missed")
    width = max(8, *(len(n) for n in per_sequence))
    print(f"{'sequence':<{width}} " + " ".join(f"{k:>7}" for k in SHOWN))
    for name, values in [*per_sequence.items(), ("COMBINED", combined)]:
        print(f"{name:<{width}} " + " ".join(
            f"{values[k]:>7.3f}" if isinstance(values[k], float) else f"{values[k]:>7d}"
            for k in SHOWN))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"combined": combined,
                                                    "sequences": per_sequence}, indent=2) + "\n")
    return 0
