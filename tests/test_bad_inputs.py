"""Bad inputs to train, val and export (issue 18): nothing silently wrong, nothing lost, one
line that says what to do. The runtime's side (predict, benchmark) is in
``test_bad_sources.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vision_tasks.config import load_config
from vision_tasks.engine.trainer import Trainer
from vision_tasks.errors import DataError, VisionTasksError
from vision_tasks.task_api import get_task


def test_yaml_1_1_exponent_floats_are_numbers_for_float_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: classify\ntrain:\n  lr: 1e-3\n  weight_decay: 5E-4\n"
                    "data:\n  augment:\n    scale: [5e-1, 1e0]\n")
    cfg = load_config(path, ["train.momentum=1e-1", "train.grad_clip=1e6"])
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 0.0005
    assert cfg.data.augment.scale == [0.5, 1.0]
    assert cfg.train.momentum == 0.1 and cfg.train.grad_clip == 1e6
    assert load_config(None, ["train.device=1e3"]).train.device == "1e3"  # a string key stays one


# ------------------------------------------------------------------ shared helpers

QUIET = dict(progress=False, log=lambda _: None)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.strip().splitlines()
            if line.startswith("error: ")]


def _fresh_checkpoint(path: Path, task: str, names: list[str], *overrides: str,
                      change=None) -> Path:
    """A checkpoint of an untrained ``task`` model (``change(state_dict)`` applied)."""
    from vision_tasks.engine.checkpoint import save_checkpoint
    from vision_tasks.models.model import build_model
    from vision_tasks.task_api import get_task

    cfg = load_config(None, list(overrides), base={"task": task})
    torch.manual_seed(0)
    state = build_model(cfg, get_task(task), len(names)).state_dict()
    if change is not None:
        change(state)
    save_checkpoint(path, {"task": task, "class_names": names, "config": cfg.to_dict(),
                           "model": state})
    return path


def _coco(root: Path, images: list[tuple[str, int, int]], annotations: list[dict],
          on_disk: tuple[str, ...] | None = None) -> str:
    """A COCO set under ``root``: ``images`` (file name, width, height), the annotations
    (``image_id`` is the 1-based index in ``images``); only ``on_disk`` files are written
    (default: all). Returns the ``data.<split>`` value."""
    folder = root / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, width, height in images:
        if on_disk is None or name in on_disk:
            Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(folder / name)
    data = {"images": [{"id": i + 1, "file_name": name, "width": w, "height": h}
                       for i, (name, w, h) in enumerate(images)],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": i + 1, "category_id": 1, **a} for i, a in enumerate(annotations)]}
    (root / "annotations.json").write_text(json.dumps(data))
    return json.dumps({"images": str(folder), "annotations": str(root / "annotations.json")})


TINY_DETECT = ["model.backbone.width=8", "model.backbone.depths=[1, 1, 1, 1, 1]",
               "model.head.channels=16", "model.head.hidden=16", "model.head.depth=1",
               "model.head.max_detections=5", "data.image_size=64", "data.workers=0"]


# ------------------------------------------------------------------ 1. NaN training


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_epoch(
        tiny_classify_data, tiny_config, tmp_path, monkeypatch) -> None:
    task = get_task("classify")
    build_loss = task.build_loss
    steps = {"n": 0}

    def poisoned(cfg, head):  # NaN from the 2nd step of epoch 2 (5 steps an epoch)
        loss = build_loss(cfg, head)

        def forward(outputs, targets):
            steps["n"] += 1
            value, parts = loss(outputs, targets)
            return (value * float("nan") if steps["n"] == 7 else value), parts

        return forward

    monkeypatch.setattr(task, "build_loss", poisoned)
    run = tmp_path / "run"
    with pytest.raises(VisionTasksError, match=r"^training stopped at epoch 2, step 2 of 5: the "
                                               r"loss is nan; the likely cause is a learning rate "
                                               r"too high .*still hold epoch 1"):
        Trainer(tiny_config(tiny_classify_data, "train.epochs=3"), run, **QUIET).fit()
    from vision_tasks.engine.checkpoint import load_checkpoint

    for name in ("last.pt", "best.pt"):
        saved = load_checkpoint(run / "weights" / name)
        assert saved["epoch"] == 1
        assert all(bool(torch.isfinite(v).all()) for v in saved["model"].values()
                   if v.is_floating_point())


def test_train_with_an_exploding_learning_rate_is_one_line_and_export_refuses_nan_weights(
        tiny_classify_data, tiny_classify_run, tmp_path, capsys) -> None:
    import shutil

    from vision_tasks.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"task: classify\ndata: {{train: {tiny_classify_data / 'train'}, "
                      f"val: {tiny_classify_data / 'val'}, image_size: 32, workers: 0}}\n"
                      "model: {backbone: {width: 4, depths: [1, 1, 1]}}\n"
                      "train: {epochs: 1, batch_size: 8, optimizer: sgd, lr: 1.0e+10, "
                      "warmup_epochs: 0}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert "training stopped at epoch 1" in line and "no checkpoint was written" in line
    assert not (tmp_path / "run" / "weights" / "best.pt").exists()

    from vision_tasks.engine.checkpoint import load_checkpoint, save_checkpoint

    nan = tmp_path / "nan.pt"
    shutil.copy(tiny_classify_run.best, nan)
    state = load_checkpoint(nan)
    for weights in (state["model"], state.get("ema") or {}):
        next(v for v in weights.values() if v.is_floating_point()).fill_(float("nan"))
    save_checkpoint(nan, {k: v for k, v in state.items() if k not in ("format", "version")})
    assert main(["export", str(nan), "--out", str(tmp_path / "nan.onnx")]) == 2
    (line,) = _error_lines(capsys)
    assert "nan.pt: 1 weight tensors hold NaN or infinity" in line and "diverged" in line
    assert not (tmp_path / "nan.onnx").exists()


# ------------------------------------------------------------------ 2. what val scores


def test_val_leaves_out_unreadable_images_and_says_how_many(tiny_classify_data, tiny_classify_run,
                                                            tmp_path, capsys) -> None:
    import shutil

    from vision_tasks.cli import main

    val = tmp_path / "val"
    shutil.copytree(tiny_classify_data / "val", val)
    broken = sorted(val.rglob("*.png"))[:2]
    broken[0].write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    broken[1].write_text("not an image")
    with pytest.warns(UserWarning, match=r"000\d+\.png"):
        assert main(["val", str(tiny_classify_run.best), "--out", str(tmp_path / "m"), "--quiet",
                     "--set", f"data.val={val}"]) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["images"] == 18  # the 20 files less the 2 unreadable: none scored twice
    assert metrics["images_left_out"] == {"listed": 20, "not_found": 0, "unreadable": 2}
    assert "2 of 20 images left out of the metric: 2 unreadable" in capsys.readouterr().out


def test_detect_val_scores_each_image_once_under_its_own_id(tmp_path) -> None:
    from vision_tasks.engine.checkpoint import model_from_checkpoint
    from vision_tasks.engine.evaluate import evaluate, make_loader

    checkpoint = _fresh_checkpoint(tmp_path / "d.pt", "detect", ["thing"], *TINY_DETECT)
    model, cfg, task, names = model_from_checkpoint(checkpoint)
    images = [(f"{i}.png", 64, 48) for i in range(4)]
    boxes = [{"image_id": i + 1, "bbox": [4, 4, 20, 20]} for i in range(4)]
    results = {}
    for case, on_disk in (("all", None), ("one missing", ("0.png", "2.png", "3.png"))):
        split = _coco(tmp_path / case, images, boxes, on_disk)
        case_cfg = load_config(None, [f"data.val={split}", *TINY_DETECT], base={"task": "detect"})
        dataset = task.build_dataset(case_cfg, "val", train=False, class_names=names)
        metrics, _ = evaluate(model, task, make_loader(task, dataset, 2, 0), names,
                              torch.device("cpu"), progress=False)
        results[case] = metrics
    all_images, one_missing = results["all"], results["one missing"]
    per_image = all_images["detections"] / 4  # max_detections on every image
    assert one_missing["detections"] == pytest.approx(3 * per_image)  # no image scored twice
    assert one_missing["images"] == 3 and all_images["images"] == 4
    assert one_missing["images_left_out"] == {"listed": 4, "not_found": 1, "unreadable": 0}


def test_a_data_set_whose_images_are_all_missing_is_one_line(tmp_path) -> None:
    split = _coco(tmp_path, [("a.png", 32, 32), ("b.png", 32, 32)],
                  [{"image_id": 1, "bbox": [1, 1, 5, 5]}], on_disk=())
    for task in ("detect", "localize"):
        cfg = load_config(None, [f"data.train={split}"], base={"task": task})
        with pytest.raises(DataError, match=r"^data\.train: none of the 2 images that .*"
                                            r"annotations\.json lists is in .*images \(the "
                                            r"first: a\.png\)"):
            get_task(task).build_dataset(cfg, "train", train=True)


# ------------------------------------------------------------------ 7. annotations


def test_boxes_that_cannot_be_used_as_written_are_counted_on_the_summary_line(tmp_path) -> None:
    split = _coco(tmp_path, [("a.png", 40, 30), ("b.png", 40, 30), ("c.png", 40, 30)], [
        {"image_id": 1, "bbox": [2, 2, 10, 10]},    # fine
        {"image_id": 1, "bbox": [5, 5, 0, 8]},      # zero width: dropped
        {"image_id": 1, "bbox": [5, 5, -4, 8]},     # negative width: dropped
        {"image_id": 2, "bbox": [50, 40, 10, 10]},  # wholly outside the 40x30 image: dropped
        {"image_id": 2, "bbox": [30, 20, 20, 20]},  # partly outside: clipped to (30, 20, 40, 30)
    ])  # c.png has no annotation: a background image
    lines: list[str] = []
    from vision_tasks.data.coco_detection import build_detection

    cfg = load_config(None, [f"data.train={split}", "data.image_size=40"], base={"task": "detect"})
    dataset = build_detection(cfg, "train", train=False, log=lines.append)
    assert lines[0].endswith(": 3 images, 2 objects, 0 crowd regions, 1 classes; 2 boxes dropped "
                             "(1 of zero size and 1 of negative size), 1 box wholly outside the "
                             "image dropped, 1 box clipped to the image; 1 image without objects "
                             "(kept as background)")
    clipped = dataset.images[1].annotations[0].box
    assert clipped == (30.0, 20.0, 40.0, 30.0)
    from vision_tasks.data.single_object import build_single_object

    build_single_object(cfg, "train", False, "largest", log=lines.append)
    assert lines[1].endswith("zero-area annotations ignored; multi_object: largest); 1 box wholly "
                             "outside the image dropped, 1 box clipped to the image")


# ------------------------------------------------------------------ 4. train --resume CONFIG


def test_resume_refuses_a_config_that_differs_from_the_saved_one(tiny_classify_run, tmp_path,
                                                                  capsys) -> None:
    import shutil

    import yaml

    from vision_tasks.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_classify_run.run_dir, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert main(["train", str(run / "config.yaml"), "--out", str(run), "--resume", "--quiet"]) == 0
    edited = {**saved, "train": {**saved["train"], "lr": 0.5}}
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(edited))
    capsys.readouterr()
    assert main(["train", str(other), "--out", str(run), "--resume", "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert "other.yaml differs from the config" in line and "train.lr: 0.01 -> 0.5" in line
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert "config.yaml was edited after the run saved it (train.lr: 0.01 -> 0.5)" in line
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.5  # kept


# ------------------------------------------------------------------ 11. one-line errors


def test_a_checkpoint_of_another_task_is_one_line_counting_what_does_not_fit(
        tiny_classify_run, tmp_path, capsys) -> None:
    from vision_tasks.cli import main
    from vision_tasks.engine.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(tiny_classify_run.best)
    state["config"]["task"] = state["task"] = "localize"
    state["config"]["model"]["head"] = {}
    state["config"]["loss"] = {}
    other = tmp_path / "other.pt"
    save_checkpoint(other, {k: v for k, v in state.items() if k not in ("format", "version")})
    assert main(["val", str(other), "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert re.search(r"other\.pt: its weights do not fit the model its config builds: \d+ "
                     r"missing \(e\.g\. head\.\S+\), \d+ unexpected \(e\.g\. head\.\S+\); drop "
                     r"--set overrides", line), line


def test_train_on_a_missing_gpu_or_into_a_file_is_one_line(tmp_path, capsys) -> None:
    from vision_tasks.cli import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    assert main(["train", "classify", "--out", str(tmp_path / "r"), "--quiet",
                 "--set", "train.device=cuda"]) == 2
    assert _error_lines(capsys) == ["error: train.device: 'cuda' asked for, but no CUDA GPU is "
                                    "visible; use cpu or auto"]
    (tmp_path / "file").write_text("")
    assert main(["train", "classify", "--out", str(tmp_path / "file"), "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert "file: is a file, not a folder" in line


# ------------------------------------------------------------------ noisy messages


def test_a_pickled_checkpoint_is_refused_in_plain_words(tmp_path) -> None:
    from vision_tasks.errors import CheckpointError
    from vision_tasks.models.weights import read_weights_file

    path = tmp_path / "pickled.pt"
    torch.save({"model": {}, "extra": Path("x")}, path)  # a Python object, not a tensor
    with pytest.raises(CheckpointError) as err:
        read_weights_file(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refused: the file holds Python objects (pathlib")
    assert "not tensors" in message and "weights_only" not in message and "\n" not in message
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"cannot read weights \(RuntimeError: "
                                              r"PytorchStreamReader failed reading zip archive: "
                                              r"failed finding central directory\); the file is "
                                              r"truncated"):
        read_weights_file(truncated)
