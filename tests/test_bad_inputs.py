"""Bad inputs to train, val and export (issue 18): nothing silently wrong, nothing lost, one
line that says what to do. The runtime's side (predict, benchmark) is in
``test_bad_sources.py``."""

from __future__ import annotations

from pathlib import Path

from vision_tasks.config import load_config


def test_yaml_1_1_exponent_floats_are_numbers_for_float_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: classify\ntrain:\n  lr: 1e-3\n  weight_decay: 5E-4\n"
                    "data:\n  augment:\n    scale: [5e-1, 1e0]\n")
    cfg = load_config(path, ["train.momentum=1e-1", "train.grad_clip=1e6"])
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 0.0005
    assert cfg.data.augment.scale == [0.5, 1.0]
    assert cfg.train.momentum == 0.1 and cfg.train.grad_clip == 1e6
    assert load_config(None, ["train.device=1e3"]).train.device == "1e3"  # a string key stays one
