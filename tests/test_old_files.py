"""Files made by vision-tasks 0.1.0 before the one-model redesign (tests/fixtures/v0_1_models:
a checkpoint and an ONNX file of each task, and a multi-head model composed of a classify and a
localize head) still load, predict, validate and export, with the numbers they gave then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime import Predictor

from vision_tasks.cli import main
from vision_tasks.engine.checkpoint import load_model
from vision_tasks.engine.validate import validate_model
from vision_tasks.task_api import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OLD = Path(__file__).parent / "fixtures" / "v0_1_models"
MODELS = ["classify", "localize", "detect", "segment", "multi"]
HEADS = {"classify": {"classify": "classify"}, "localize": {"localize": "localize"},
         "detect": {"detect": "detect"}, "segment": {"segment": "segment"},
         "multi": {"shape": "classify", "box": "localize"}}


def expected(name: str) -> dict[str, np.ndarray]:
    data = json.loads((OLD / "expected.json").read_text())[name]
    return {key: np.asarray(value) for key, value in data.items()}


def outputs_of(onnx_file: Path) -> dict[str, np.ndarray]:
    predictor = Predictor(onnx_file, device="cpu")
    batch = np.stack([predictor.prepare(p)[0] for p in sorted(OLD.glob("image*.png"))])
    return predictor.run(batch)


def assert_same_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_allclose(np.asarray(got[key], np.float64), value, atol=1e-4, err_msg=key)


@pytest.mark.parametrize("name", MODELS)
def test_an_old_onnx_file_predicts_what_it_predicted_when_it_was_made(name: str) -> None:
    assert_same_outputs(outputs_of(OLD / f"{name}.onnx"), expected(name))


@pytest.mark.parametrize("name", MODELS)
def test_an_old_checkpoint_loads_as_one_model_with_its_heads_and_exports_the_same_numbers(
        name: str, tmp_path: Path) -> None:
    loaded = load_model(OLD / f"{name}.pt")
    assert {head: info.task.name for head, info in loaded.heads.items()} == HEADS[name]
    assert list(loaded.model.heads) == list(HEADS[name])
    result = export_checkpoint(OLD / f"{name}.pt", tmp_path / "again.onnx", check=True)
    assert result.parity is not None
    assert_same_outputs(outputs_of(tmp_path / "again.onnx"), expected(name))
    old_meta = Predictor(OLD / f"{name}.onnx", device="cpu").metadata
    assert result.metadata.outputs == old_meta.outputs
    assert result.metadata.version_needed == old_meta.version_needed


def test_an_old_single_task_checkpoint_keeps_its_weight_names_when_saved_again() -> None:
    from vision_tasks.engine.checkpoint import load_checkpoint

    state = load_checkpoint(OLD / "detect.pt")
    model = load_model(OLD / "detect.pt", state=state).model
    assert list(model.state_dict()) == list(state["model"])


@pytest.mark.parametrize("name", ["classify", "multi"])
def test_summary_of_an_old_checkpoint_prints_its_table(name: str, capsys) -> None:
    assert main(["summary", str(OLD / f"{name}.pt")]) == 0
    assert "Total learnable parameters" in capsys.readouterr().out


def test_val_of_an_old_checkpoint_on_new_data(tmp_path: Path) -> None:
    get_task("classify").synthesize(tmp_path / "data", 5, 10, 32, seed=5)
    metrics, _ = validate_model(OLD / "classify.pt", [f"data.val={tmp_path / 'data' / 'val'}"],
                                out_dir=tmp_path / "val", progress=False)
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["images"] == 10
