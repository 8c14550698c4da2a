"""Configs that build on another (``base:``): the file's keys laid over its base's."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_tasks.config import load_config, save_config
from vision_tasks.errors import ConfigError

CONFIGS = Path(__file__).parent.parent / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_base_by_ready_name_merges_mappings_and_replaces_other_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "mine.yaml", "base: detect\nmodel:\n  head:\n    channels: 32\n"
                            "data:\n  augment:\n    scale: [0.9, 1.1]\ntrain:\n  epochs: 3\n"))
    ready = load_config(CONFIGS / "detect.yaml")
    assert cfg.task == "detect" and cfg.model.head.channels == 32 and cfg.train.epochs == 3
    assert cfg.model.head.hidden == ready.model.head.hidden  # the rest of the section is kept
    assert cfg.model.backbone == ready.model.backbone
    assert cfg.data.augment.scale == [0.9, 1.1] and cfg.data.augment.hflip == ready.data.augment.hflip


def test_a_base_chain_by_relative_path_and_the_saved_config_is_the_resolved_whole(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.yaml", "task: classify\ntrain:\n  epochs: 7\n  lr: 0.01\n")
    write(tmp_path / "sub" / "b.yaml", "base: ../a.yaml\ntrain:\n  lr: 0.02\n")
    cfg = load_config(write(tmp_path / "sub" / "c.yaml", "base: b.yaml\ndata:\n  image_size: 48\n"),
                      ["train.epochs=2"])
    assert (cfg.train.epochs, cfg.train.lr, cfg.data.image_size) == (2, 0.02, 48)
    save_config(cfg, tmp_path / "resolved.yaml")
    assert "base" not in (tmp_path / "resolved.yaml").read_text()
    assert load_config(tmp_path / "resolved.yaml") == cfg


def test_the_ready_torchvision_detect_configs_are_resnet18_plus_what_differs() -> None:
    r18 = load_config(CONFIGS / "detect_resnet18.yaml")
    for name, backbone in (("detect_resnet50", "resnet50"), ("detect_mobilenet_v3", "mobilenet_v3_large")):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.model.backbone.name == backbone
        assert cfg.train == r18.train and cfg.data == r18.data and cfg.loss == r18.loss
        assert len((CONFIGS / f"{name}.yaml").read_text().splitlines()) < 20


@pytest.mark.parametrize(("files", "message"), [
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, r"b\.yaml: base: configs build on each other in a circle"),
    ({"a.yaml": "base: [1]\n"}, r"a\.yaml: base: expected the name of a ready config or a YAML file"),
    ({"a.yaml": "base: no_such_config\n"}, r"no_such_config: no such config file, and no ready config"),
])
def test_a_bad_base_is_a_one_line_error_naming_the_file(tmp_path: Path, files: dict[str, str],
                                                        message: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")
