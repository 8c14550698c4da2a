"""Messages that say what happened (issue 28): data synth's numbers are checked before
anything is allocated, Ctrl-C before the first saved epoch does not point at a missing
last.pt, a disk-full export names the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_tasks.cli import main


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(("flags", "says"), [
    (["--train", "-5"], "data synth --train -5: a count of images (videos for track) must be 0 "
                        "or more"),
    (["--val", "-1"], "data synth --val -1: a count of images (videos for track) must be 0 "
                      "or more"),
    (["--size", "100000"], "data synth --size 100000: the image side must be 16 to 4096 pixels"),
    (["--size", "3"], "data synth --size 3: the image side must be 16 to 4096 pixels"),
    (["--frames", "0"], "data synth --frames 0: must be 1 or more"),
])
def test_synth_numbers_out_of_range_are_one_line_and_write_nothing(flags, says, tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["data", "synth", "classify", str(out), *flags]) == 2
    assert _errors(capsys) == [f"error: {says}"]
    assert not out.exists()


class _InterruptedTrainer:
    """Stands in for the Trainer: Ctrl-C arrives before its first epoch is saved."""

    def __init__(self, cfg, out, **kwargs) -> None:
        self.last_path = Path(out) / "weights" / "last.pt"

    def fit(self):
        raise KeyboardInterrupt


def test_ctrl_c_before_the_first_epoch_does_not_offer_resume(tmp_path, capsys, monkeypatch):
    import vision_tasks.engine.trainer as trainer

    monkeypatch.setattr(trainer, "Trainer", _InterruptedTrainer)
    assert main(["train", "classify", "--out", str(tmp_path / "run"), "--quiet"]) == 130
    (line,) = _errors(capsys)
    assert "before the first epoch finished: nothing was saved" in line
    assert "--resume`" not in line


def test_export_on_a_full_disk_names_the_destination(tmp_path, capsys, monkeypatch):
    import vision_tasks.export.onnx_export as onnx_export

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export, "export_checkpoint", full_disk)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"x")
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    assert _errors(capsys) == [f"error: {tmp_path / 'm.onnx'}: cannot write (No space left on "
                               "device); free some disk space or choose another --out"]


def test_pickled_checkpoints_are_refused_as_pickles_not_called_corrupt(tmp_path, capsys):
    import os
    import pickle

    import torch

    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"weights": [1.0]}, protocol=4))
    saved = tmp_path / "saved.pt"
    torch.save({"f": os.getcwd}, saved)  # a function: a global of a blocked module
    for path, says in ((plain, "refused: a plain Python pickle (pickle.dump)"),
                       (saved, f"refused: the file holds Python objects ({os.getcwd.__module__}.")):
        assert main(["export", str(path), "--out", str(tmp_path / "m.onnx")]) == 2
        (line,) = _errors(capsys)
        assert line.startswith(f"error: {path}: {says}") and "corrupt" not in line


def test_a_folder_that_cannot_be_listed_is_in_errors_jsonl(tmp_path, monkeypatch, capsys):
    import json
    import os

    import cv2
    import numpy as np
    from test_segment_runtime import segment_model

    model = segment_model(tmp_path / "seg.onnx", np.array([[4, 4, 40, 40]], np.float32))
    photos = tmp_path / "photos"
    (photos / "private").mkdir(parents=True)
    for path in (photos / "a.png", photos / "private" / "b.png"):
        cv2.imwrite(str(path), np.zeros((48, 64, 3), np.uint8))
    real_scandir = os.scandir

    def scandir(path="."):  # as a folder of another user without read permission lists
        if os.fspath(path) == str(photos / "private"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    assert main(["predict", str(model), str(photos), "--out", str(out), "--quiet"]) == 0
    monkeypatch.undo()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["source"] for e in errors] == [str(photos / "private")]
    assert "predicted 1 image, 1 error" in capsys.readouterr().out


CLI_WITH_SMALL_PIXEL_LIMIT = """
import sys
from PIL import Image
from vision_tasks.cli import main
Image.MAX_IMAGE_PIXELS = 1000  # 40x30 = 1200 pixels: over, not twice over
sys.argv = ["vision-tasks", *sys.argv[1:]]
sys.exit(main())
"""


def test_the_large_image_warning_is_one_line_on_the_command_line(tmp_path):
    import subprocess
    import sys

    import cv2
    import numpy as np
    from test_segment_runtime import segment_model

    model = segment_model(tmp_path / "seg.onnx", np.array([[4, 4, 40, 40]], np.float32))
    image = tmp_path / "large.png"
    cv2.imwrite(str(image), np.zeros((30, 40, 3), np.uint8))
    run = subprocess.run([sys.executable, "-c", CLI_WITH_SMALL_PIXEL_LIMIT, "predict", str(model),
                          str(image), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    warned = [line for line in run.stderr.splitlines() if "40x30 pixels" in line]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {image}: 40x30 pixels, more than")
    assert "UserWarning" not in run.stderr and "warnings.warn" not in run.stderr
