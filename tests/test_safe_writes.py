"""Writes that keep what the user had: data synth / data convert refuse a folder holding
files unless --overwrite and then replace only their own files; predict never reads its own
--out as input; an export ended by SIGTERM leaves no temporary file, and one a SIGKILL left is
swept by the next run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from test_segment_runtime import segment_model

from vision_tasks.cli import main
from vision_tasks.fileio import TEMP_NAME, sweep_temp_files
from vision_tasks.locks import SIGTERM_STATUS, lock_path_for

WAIT_S = 120


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _user_files(out: Path) -> dict[str, str]:
    """A user's photos and notes where synth writes (a PNG at a split's top, one in a class
    folder, a text file), as relative path -> hash."""
    (out / "train" / "circle").mkdir(parents=True)
    cv2.imwrite(str(out / "train" / "holiday.png"), np.full((8, 8, 3), 200, np.uint8))
    cv2.imwrite(str(out / "train" / "circle" / "my_circle.png"), np.zeros((8, 8, 3), np.uint8))
    (out / "notes.txt").write_text("mine")
    return _tree(out)


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def _synth(out: Path, *extra: str, train: int = 2) -> int:
    return main(["data", "synth", "classify", str(out), "--train", str(train), "--val", "1",
                 "--size", "16", *extra])


def test_synth_into_a_folder_with_a_user_photo_refuses_and_overwrite_keeps_it(tmp_path, capsys):
    out = tmp_path / "photos"
    mine = _user_files(out)
    assert _synth(out) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"error: {out}: already holds 3 file(s)") and "--overwrite" in line
    assert _tree(out) == mine
    assert _synth(out, "--overwrite") == 0
    after = _tree(out)
    assert {name: after.get(name) for name in mine} == mine  # every user file, unchanged
    assert len(after) == len(mine) + 3  # and the set's 2 + 1 images


def test_synth_overwrite_replaces_an_earlier_set_without_mixing(tmp_path):
    out = tmp_path / "set"
    assert _synth(out, train=5) == 0
    assert _synth(out, "--overwrite", train=2) == 0
    assert len(list((out / "train").rglob("*.png"))) == 2  # not 2 new + 3 old


def test_convert_into_a_folder_with_files_refuses_unless_overwrite(tmp_path, capsys):
    coco = tmp_path / "coco"
    assert main(["data", "synth", "detect", str(coco), "--train", "2", "--val", "1",
                 "--size", "32"]) == 0
    out = tmp_path / "yolo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["data", "convert", str(coco), str(out)]) == 2
    (line,) = _errors(capsys)
    assert line.startswith(f"error: {out}: already holds 1 file(s)") and "--overwrite" in line
    assert _tree(out) == {"notes.txt": hashlib.sha256(b"mine").hexdigest()}
    assert main(["data", "convert", str(coco), str(out), "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "data.yaml").is_file()


def test_predict_never_reads_its_out_folder_inside_the_source(tmp_path, capsys):
    model = segment_model(tmp_path / "seg.onnx", np.array([[4, 4, 40, 40]], np.float32))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.png"), np.full((48, 64, 3), 60 * i, np.uint8))
    out = photos / "preds"
    for extra in ([], ["--overwrite"]):  # the second walk finds out/images/ drawings
        assert main(["predict", str(model), str(photos), "--out", str(out), "--save-images",
                     "--quiet", *extra]) == 0
        lines = (out / "predictions.jsonl").read_text().splitlines()
        assert sorted(Path(json.loads(line)["source"]).name for line in lines) == ["p0.png",
                                                                                   "p1.png"]
    capsys.readouterr()
    only_out = tmp_path / "only"
    (only_out / "o").mkdir(parents=True)
    cv2.imwrite(str(only_out / "o" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert main(["predict", str(model), str(only_out), "--out", str(only_out / "o")]) == 2
    (line,) = _errors(capsys)
    assert "all its files are inside --out" in line


WRITER = """
import os, signal, sys, time
from vision_tasks.fileio import atomic_path
from vision_tasks.locks import hold_output
with hold_output(sys.argv[1], is_file=True, sigterm=True):  # as `vision-tasks export` does
    with atomic_path(sys.argv[1], durable=True) as tmp:
        tmp.write_bytes(b"half an onnx file")
        time.sleep(300)
"""


def _writer_mid_write(dest: Path) -> tuple[subprocess.Popen, Path]:
    """A real process in the middle of an atomic export write to ``dest``; its temp file."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(dest)])
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            temps = [p for p in dest.parent.iterdir() if TEMP_NAME.match(p.name)]
            if temps and temps[0].stat().st_size:
                return proc, temps[0]
            assert proc.poll() is None, f"the writer ended early ({proc.returncode})"
            time.sleep(0.05)
        raise AssertionError("the writer did not start writing in time")
    except BaseException:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
        raise


def test_export_ended_by_sigterm_leaves_no_temporary_file(tmp_path):
    dest = tmp_path / "m.onnx"
    proc, temp = _writer_mid_write(dest)
    try:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == SIGTERM_STATUS
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=WAIT_S)
    assert not temp.exists() and not dest.exists()
    assert not lock_path_for(dest, is_file=True).exists()


def test_next_export_sweeps_the_temporary_file_a_sigkill_left(tmp_path, capsys):
    dest = tmp_path / "m.onnx"
    proc, temp = _writer_mid_write(dest)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=WAIT_S)
    assert temp.exists()  # nothing can clean up after SIGKILL ...
    others = [tmp_path / ".other.onnx.abcd1234.tmp", tmp_path / ".m.onnx.notes"]
    for path in others:
        path.write_text("not this run's")
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"no checkpoint")
    main(["export", str(checkpoint), "--out", str(dest)])  # fails on the checkpoint, after ...
    assert not temp.exists()  # ... the sweep: the next run into the same file removes it
    assert all(path.exists() for path in others)


def test_sweep_removes_only_our_temporary_names(tmp_path):
    ours = [tmp_path / ".a.jsonl.k2j_9xq1.tmp", tmp_path / "images" / ".x.png.abcdefgh.tmp"]
    kept = [tmp_path / "a.tmp", tmp_path / ".a.jsonl.tmp", tmp_path / ".a.jsonl.TOOLONG99.tmp",
            tmp_path / "images" / "deep" / ".y.png.abcdefgh.tmp"]
    for path in ours + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    assert sweep_temp_files(tmp_path, depth=1) == 2
    assert not any(p.exists() for p in ours) and all(p.exists() for p in kept)


def test_export_replaces_an_earlier_export_but_not_a_users_file(tiny_classify_run, tmp_path,
                                                                capsys):
    mine = tmp_path / "mine.onnx"
    mine.write_text("the user's own file")
    assert main(["export", str(tiny_classify_run.best), "--out", str(mine)]) == 2
    (line,) = _errors(capsys)
    assert line == (f"error: {mine}: exists and is not a model written by vision-tasks export; "
                    "choose another --out, or pass --overwrite to replace it")
    assert mine.read_text() == "the user's own file"
    ours = tmp_path / "ours.onnx"
    for _ in range(2):  # the second export replaces the first one's file
        assert main(["export", str(tiny_classify_run.best), "--out", str(ours)]) == 0
    assert main(["export", str(tiny_classify_run.best), "--out", str(mine), "--overwrite"]) == 0
    assert mine.read_bytes()[:1] != b"t"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp, no lock


def test_predict_on_a_video_keeps_a_videos_folder_it_did_not_write(tmp_path, capsys):
    from test_video import write_video

    model = segment_model(tmp_path / "seg.onnx", np.array([[4, 4, 40, 40]], np.float32))
    clip = write_video(tmp_path / "clip.avi", 3)
    out = tmp_path / "media"
    (out / "videos").mkdir(parents=True)
    (out / "videos" / "holiday.mp4").write_bytes(b"the user's film")
    assert main(["predict", str(model), str(clip), "--out", str(out), "--quiet"]) == 2
    (line,) = [line for line in _errors(capsys) if line.startswith("error:")]
    assert line.startswith(f"error: {out / 'videos'} already exists") and "--overwrite" in line
    assert (out / "videos" / "holiday.mp4").read_bytes() == b"the user's film"


def test_convert_over_its_own_source_keeps_the_images(tmp_path):
    root = tmp_path / "set"  # a YOLO set whose images already sit where COCO puts them
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    image = root / "train" / "images" / "a.png"
    cv2.imwrite(str(image), np.full((20, 20, 3), 90, np.uint8))
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("path: .\ntrain: train/images\nnames: [thing]\n")
    before = image.read_bytes()
    assert main(["data", "convert", str(root / "data.yaml"), str(root), "--overwrite"]) == 0
    assert image.read_bytes() == before
    assert json.loads((root / "train" / "annotations.json").read_text())["images"]


def test_predict_sweeps_a_temporary_drawing_a_killed_run_left_deep_in_out(tmp_path):
    model = segment_model(tmp_path / "seg.onnx", np.array([[4, 4, 40, 40]], np.float32))
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "p.png"), np.zeros((48, 64, 3), np.uint8))
    argv = ["predict", str(model), str(tmp_path / "photos"), "--out", str(tmp_path / "out"),
            "--quiet"]
    assert main(argv) == 0
    left = tmp_path / "out" / "images" / "a" / "b" / ".p.png.abcdefgh.tmp"  # as after SIGKILL
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a drawing")
    assert main([*argv, "--resume"]) == 0
    assert not left.exists()
