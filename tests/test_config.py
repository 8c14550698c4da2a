"""Config errors name the file, the key and what is expected, on one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from vision_tasks.config import Config, load_config, save_config
from vision_tasks.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def error_of(path: Path | None, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_ready_configs_load() -> None:
    cfg = load_config(REPO / "configs" / "classify.yaml")
    assert isinstance(cfg, Config) and cfg.task == "classify"
    assert cfg.model.head.pool == "max"


def test_misspelt_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "task: classify\ntrain:\n  lrr: 0.1\n")
    message = error_of(path)
    assert str(path) in message and "train.lrr" in message and "did you mean 'lr'" in message


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "task: classify\ntrain:\n  epochs: ten\n"))
    assert "train.epochs" in message and "expected an integer" in message and "'ten'" in message


def test_bool_is_not_accepted_as_a_number(tmp_path: Path) -> None:
    assert "train.lr" in error_of(write(tmp_path, "task: classify\ntrain:\n  lr: true\n"))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "not found" in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "task: classify\ntrain: [1, 2\n"))
    assert "YAML syntax error" in message and "line" in message


def test_unknown_task_and_backbone_list_the_choices(tmp_path: Path) -> None:
    assert "unknown task 'clasify'" in error_of(write(tmp_path, "task: clasify\n"))
    message = error_of(write(tmp_path, "task: classify\nmodel:\n  backbone:\n    name: resnet19\n"))
    assert "model.backbone.name" in message and "did you mean 'resnet18'" in message


def test_task_owned_sections_are_validated_by_the_task(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "task: classify\nmodel:\n  head:\n    pooll: avg\n"))
    assert "model.head.pooll" in message and "did you mean 'pool'" in message
    assert "loss.smoothing" in error_of(write(tmp_path, "task: classify\nloss:\n  smoothing: 0.1\n"))


def test_value_checks_name_the_key(tmp_path: Path) -> None:
    assert "model.backbone.freeze" in error_of(None, ["task=classify", "model.backbone.freeze=some"])
    assert "train.optimizer" in error_of(None, ["task=classify", "train.optimizer=rmsprop"])
    assert "data.augment.scale" in error_of(None, ["task=classify", "data.augment.scale=[1.5, 1.0]"])


def test_set_overrides_any_key_with_yaml_typed_values() -> None:
    cfg = load_config(REPO / "configs" / "classify.yaml",
                      ["train.lr=0.05", "model.backbone.depths=[1, 2]", "model.backbone.freeze=2",
                       "model.backbone.pretrained=null"])
    assert cfg.train.lr == 0.05 and cfg.model.backbone.depths == [1, 2]
    assert cfg.model.backbone.freeze == 2 and cfg.model.backbone.pretrained is None


def test_malformed_set_is_a_clear_error() -> None:
    assert "expected KEY=VALUE" in error_of(None, ["train.lr"])
    assert "is a value, not a section" in error_of(None, ["task=classify", "task.x=1"])


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "classify.yaml", ["train.epochs=3"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_off_is_a_choice_not_a_yaml_boolean(tmp_path: Path) -> None:
    """YAML 1.1 reads ``off`` as false; a key whose choices include 'off' takes it as 'off'."""
    assert load_config(None, ["task=classify", "train.amp=off"]).train.amp == "off"
    assert load_config(write(tmp_path, "task: classify\ntrain:\n  amp: off\n")).train.amp == "off"
    assert "train.ema" in error_of(None, ["task=classify", "train.ema=maybe"])
