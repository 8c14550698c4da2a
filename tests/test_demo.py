"""`vision-tasks demo` (README's first command) runs every step end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from vision_tasks.cli import main


def test_demo_synthesizes_trains_evaluates_exports_and_predicts(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--quiet", "--set", "train.epochs=1",
                 "--set", "model.backbone.width=4", "--set", "model.backbone.depths=[1, 1]",
                 "--set", "data.workers=0"])
    assert code == 0
    assert (out / "run" / "weights" / "best.pt").is_file()
    metrics = json.loads((out / "run" / "val" / "metrics.json").read_text())
    confusion = metrics["confusion_matrix"]
    assert sum(map(sum, confusion)) == 300  # every val image, once
    assert metrics["top1"] == pytest.approx(sum(row[i] for i, row in enumerate(confusion)) / 300)
    with open(out / "run" / "metrics.csv") as f:
        (epoch,) = csv.DictReader(f)  # the one epoch trained: its validation is the val verb's
    assert float(epoch["val_top1"]) == pytest.approx(metrics["top1"], abs=1e-6)
    assert (out / "model.onnx").is_file()
    records = [json.loads(line) for line in
               (out / "predict" / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 300 and {r["task"] for r in records} == {"classify"}
    # The ONNX runtime's answers agree with PyTorch's top1 (a near-tie may flip a few).
    right = sum(Path(r["source"]).parent.name == r["name"] for r in records)
    assert right / 300 == pytest.approx(metrics["top1"], abs=0.02)
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "predictions.jsonl" in printed
