"""`vision-tasks demo` (README's first command) runs every step end to end."""

from __future__ import annotations

import json
from pathlib import Path

from vision_tasks.cli import main


def test_demo_synthesizes_trains_evaluates_exports_and_predicts(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--quiet", "--set", "train.epochs=1",
                 "--set", "model.backbone.width=4", "--set", "model.backbone.depths=[1, 1]",
                 "--set", "data.workers=0"])
    assert code == 0
    assert (out / "run" / "weights" / "best.pt").is_file()
    metrics = json.loads((out / "run" / "val" / "metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= 1.0
    assert (out / "model.onnx").is_file()
    lines = (out / "predict" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 300 and json.loads(lines[0])["task"] == "classify"
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "predictions.jsonl" in printed
