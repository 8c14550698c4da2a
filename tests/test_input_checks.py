"""Documented inputs are checked against what they must be (issue family "input whose meaning
is guessed"): ONNX metadata against the graph it describes, arrays given to the Python API,
and the files of ours that are read back (checkpoint headers, predict's run.json and JSONL,
a resumed run's training state). What does not fit is a one-line error naming the file, or a
documented conversion, never a silent guess and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from vision_tasks.export.onnx_export import ExportError, export_checkpoint
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.batch import read_done
from vision_tasks.export.runtime.coco import write_coco_results

from vision_tasks.cli import main
from vision_tasks.contract import ModelFileError
from vision_tasks.engine.checkpoint import load_model
from vision_tasks.engine.trainer import TrainState
from vision_tasks.errors import CheckpointError

OLD = Path(__file__).parent / "fixtures" / "v0_1_models"
IMAGES = sorted(OLD.glob("image*.png"))


def edited(name: str, tmp_path: Path, **changes: object) -> Path:
    """A copy of the fixture model ``name`` with metadata keys replaced (JSON values)."""
    proto = onnx.load(str(OLD / f"{name}.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        props[key] = json.dumps(value)
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    out = tmp_path / f"{name}-edited.onnx"
    onnx.save(proto, str(out))
    return out


def heads_of(name: str) -> dict:
    proto = onnx.load(str(OLD / f"{name}.onnx"))
    return json.loads(next(p.value for p in proto.metadata_props if p.key == "heads"))


def assert_one_line(text: str, *parts: str) -> None:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    for part in parts:
        assert part in text, text


def cli_error(stderr: str) -> str:
    """The one error line of a failed command (progress lines before it are allowed)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# --- ONNX metadata against its graph ---------------------------------------------------------

@pytest.mark.parametrize(("name", "changes", "says"), [
    ("classify", {"class_names": ["a", "b", "c"]}, "output 'scores' has size 5 where its metadata says 3 classes"),
    ("localize", {"class_names": ["a"] * 7, "category_ids": list(range(7))}, "says 7 classes"),
    ("detect", {"max_detections": 7}, "output 'boxes' has size 10 where its metadata says max_detections 7"),
    ("detect", {"category_ids": [1, 2]}, "'category_ids' should be one integer per class name (5)"),
    ("detect", {"thresholds": {"score": "high"}}, "'thresholds' should be a mapping of names to numbers in [0, 1]"),
    ("detect", {"thresholds": {"iou": 4.5}}, "'thresholds' should be"),
    ("detect", {"max_detections": True}, "'max_detections' should be a positive integer"),
])
def test_metadata_that_does_not_describe_its_graph_is_refused(name: str, changes: dict,
                                                               says: str, tmp_path: Path) -> None:
    path = edited(name, tmp_path, **changes)
    with pytest.raises(ModelFileError) as err:
        Predictor(path, device="cpu")
    assert_one_line(str(err.value), str(path), says)


def test_box_labels_beyond_the_class_names_are_a_model_error_not_an_index_error(
        tmp_path: Path) -> None:
    """A box graph's class count is not in its output shapes: the labels it returns are
    checked as they are decoded."""
    path = edited("detect", tmp_path, class_names=["a"], category_ids=[1])
    predictor = Predictor(path, device="cpu", score_threshold=0.0)
    with pytest.raises(ModelFileError) as err:
        for image in IMAGES * 8:
            if any(d.label > 0 for d in predictor.predict_one(image).detections or []):
                break
    assert_one_line(str(err.value), str(path), "but its metadata names 1 classes")


def test_a_multi_head_file_checks_each_heads_classes_against_its_outputs(tmp_path: Path) -> None:
    heads = heads_of("multi")
    heads["box"]["class_names"] = heads["box"]["class_names"][:2]
    heads["box"].pop("category_ids", None)
    path = edited("multi", tmp_path, heads=heads)
    with pytest.raises(ModelFileError) as err:
        Predictor(path, device="cpu")
    assert_one_line(str(err.value), "output 'box.scores' has size 5 where its metadata says 2 classes")


def test_the_cli_reports_a_mismatched_file_in_one_line(tmp_path: Path, capsys) -> None:
    path = edited("classify", tmp_path, class_names=["a", "b"])
    assert main(["predict", str(path), str(IMAGES[0]), "--out", str(tmp_path / "out")]) != 0
    assert_one_line(cli_error(capsys.readouterr().err), str(path), "metadata says 2 classes")
    assert not (tmp_path / "out" / "predictions.jsonl").exists()


# --- arrays given to the Python API ----------------------------------------------------------

def test_a_batch_array_is_n_images_and_float_levels_are_refused() -> None:
    predictor = Predictor(OLD / "classify.onnx", device="cpu")
    images = np.stack([np.asarray(predictor.prepare(p)[0]) for p in IMAGES])
    batch = predictor.predict(images)
    one_by_one = [predictor.predict_one(image) for image in images]
    assert len(batch) == len(images)
    for a, b in zip(batch, one_by_one, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_one(images[0] / 255.0).scores,
                               one_by_one[0].scores, atol=1e-6)  # floats in [0, 1]: documented
    with pytest.raises(ValueError, match=r"values span .*divide by 255"):
        predictor.predict(images[0].astype(np.float32))
    with pytest.raises(ValueError, match=r"channels-first"):
        predictor.predict(images[0].transpose(2, 0, 1).copy())


def test_run_names_what_it_got_instead_of_failing_inside() -> None:
    predictor = Predictor(OLD / "classify.onnx", device="cpu")
    for bad in ([np.zeros((32, 32, 3), np.uint8)], np.zeros((0, 32, 32, 3), np.uint8),
                np.zeros((1, 32, 32, 3), np.float32)):
        with pytest.raises(ValueError) as err:
            predictor.run(bad)
        assert_one_line(str(err.value), "run expects a non-empty uint8 array [N, 32, 32, 3]")


# --- files of ours read back -----------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "says"), [
    ("class_names", "circle", "class_names is 'circle', not a list of names"),
    ("class_names", [1, 2, 3, 4, 5], "not a list of names"),
    ("category_ids", [1, 2], "category_ids is [1, 2], not one id per class (5)"),
    ("category_ids", "12345", "not one id per class"),
])
def test_a_checkpoint_header_of_another_shape_is_a_one_line_error(key: str, value: object,
                                                                   says: str, tmp_path: Path) -> None:
    state = torch.load(OLD / "classify.pt", weights_only=True)
    state[key] = value
    path = tmp_path / "edited.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert_one_line(str(err.value), str(path), says)


@pytest.mark.parametrize(("key", "value"), [("epoch", "three"), ("history", {"a": 1}),
                                            ("best_metric", [0.5]), ("optimizer", {"x": 1})])
def test_a_damaged_training_state_is_a_one_line_error_naming_last_pt(key: str, value: object,
                                                                     tmp_path: Path) -> None:
    loaded = load_model(OLD / "classify.pt")
    cpu = torch.device("cpu")
    state = TrainState.start(loaded.model, loaded.cfg.train, 4, None, cpu)
    saved = state.state_dict()
    saved[key] = value
    fresh = TrainState.start(load_model(OLD / "classify.pt").model, loaded.cfg.train, 4, None, cpu)
    with pytest.raises(CheckpointError) as err:
        fresh.load_state_dict(saved, source=tmp_path / "last.pt")
    assert_one_line(str(err.value), "last.pt: its training state is damaged")


@pytest.mark.parametrize("text", ["[1, 2, 3]\n", "{not json", '{"model_sha256": 5}\n'])
def test_predict_resume_refuses_a_run_record_it_cannot_read(text: str, tmp_path: Path,
                                                            capsys) -> None:
    out = tmp_path / "out"
    assert main(["predict", str(OLD / "classify.onnx"), str(IMAGES[0]), "--out", str(out),
                 "--quiet"]) == 0
    lines = (out / "predictions.jsonl").read_bytes()
    (out / "run.json").write_text(text)
    code = main(["predict", str(OLD / "classify.onnx"), str(OLD), "--out", str(out), "--resume",
                 "--quiet"])
    assert code != 0
    assert_one_line(cli_error(capsys.readouterr().err), str(out / "run.json"), "--overwrite")
    assert (out / "predictions.jsonl").read_bytes() == lines  # nothing appended


def test_jsonl_lines_of_another_shape_are_predicted_again_not_guessed(tmp_path: Path) -> None:
    jsonl = tmp_path / "predictions.jsonl"
    good = {"source": "a.png", "detections": [{"box": [1, 2, 3, 4], "score": 0.9, "label": 0}]}
    jsonl.write_text("\n".join(json.dumps(x) for x in [
        good, {"source": 7}, [1, 2], {"source": "b.png", "detections": [5]},
        {"source": "c.png", "detections": "none"}]) + "\n")
    assert read_done(jsonl) == {"a.png", "b.png", "c.png"}
    meta = Predictor(OLD / "detect.onnx", device="cpu").metadata
    count = write_coco_results(jsonl, tmp_path / "coco.json", meta)
    assert count == 1 and json.loads((tmp_path / "coco.json").read_text())[0]["score"] == 0.9


def test_export_at_another_size_runs_and_a_size_bound_model_is_refused(tmp_path: Path) -> None:
    result = export_checkpoint(OLD / "detect.pt", tmp_path / "d96.onnx", image_size=96)
    predictor = Predictor(result.path, device="cpu")
    assert predictor.input_size == (96, 96)
    assert len(predictor.predict(IMAGES)) == len(IMAGES)
    with pytest.raises(ExportError) as err:
        export_checkpoint(OLD / "localize.pt", tmp_path / "l96.onnx", image_size=96)
    assert_one_line(str(err.value), "localize.pt: cannot export at --image-size 96",
                    "export it at its own size, 32")
    assert not (tmp_path / "l96.onnx").exists()
