"""The trainer learns, resumes exactly, writes its run folder and survives bad images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from testkit import overfit

from vision_tasks.cli import main
from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.trainer import Trainer
from vision_tasks.errors import CheckpointError
from vision_tasks.task_api import get_task


def quiet(_: str) -> None:
    pass


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adagrad", "adam", "adamw"])
def test_loss_falls_when_overfitting_one_batch(tiny_classify_data, tiny_config, optimizer) -> None:
    cfg = tiny_config(tiny_classify_data, f"train.optimizer={optimizer}",
                      "train.lr=0.05" if optimizer in ("sgd", "momentum", "adagrad") else "train.lr=0.01")
    losses, _, _ = overfit(cfg, get_task("classify"), 16, 40)
    assert losses[-1] < 0.5 * losses[0]


class StopAfter:
    """Simulates an interruption (Ctrl-C) once an epoch has finished."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, trainer: Trainer, epoch: int, row: dict) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_interrupted_and_resumed_run_ends_with_the_same_weights(tiny_classify_data, tiny_config,
                                                                tmp_path: Path) -> None:
    cfg = tiny_config(tiny_classify_data, "train.epochs=3", "model.head.dropout=0.2",
                      "train.warmup_epochs=1")
    Trainer(cfg, tmp_path / "straight", progress=False, log=quiet).fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed", progress=False, log=quiet, callbacks=[StopAfter(1)]).fit()
    assert load_checkpoint(tmp_path / "resumed" / "weights" / "last.pt")["epoch"] == 1
    Trainer(None, tmp_path / "resumed", resume=True, progress=False, log=quiet).fit()

    straight = load_checkpoint(tmp_path / "straight" / "weights" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "weights" / "last.pt")
    assert resumed["epoch"] == straight["epoch"] == 3
    for part in ("model", "ema"):
        for key, value in straight[part].items():
            assert torch.equal(value, resumed[part][key]), f"{part}.{key}"
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    assert resumed["history"][-1]["train_loss"] == straight["history"][-1]["train_loss"]


def test_run_folder_holds_weights_metrics_config_and_plots(tiny_classify_run) -> None:
    run = tiny_classify_run.run_dir
    for name in ("weights/last.pt", "weights/best.pt", "metrics.csv", "config.yaml", "curves.png",
                 "confusion_matrix.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "lr", "val_top1", "val_top5"} <= set(header)
    best = torch.load(run / "weights" / "best.pt", weights_only=True)
    assert "optimizer" not in best
    assert best["class_names"] == ["circle", "cross", "square", "star", "triangle"]  # folder order


def test_new_run_refuses_to_overwrite_an_existing_run(tiny_classify_run, tiny_classify_data,
                                                      tiny_config) -> None:
    with pytest.raises(CheckpointError, match="already holds a training run; continue it with --resume"):
        Trainer(tiny_config(tiny_classify_data), tiny_classify_run.run_dir, progress=False)


def test_cli_train_then_val_writes_metrics_json(tiny_classify_data, tmp_path: Path, capsys) -> None:
    overrides = [f"data.train={tiny_classify_data / 'train'}", f"data.val={tiny_classify_data / 'val'}",
                 "model.backbone.width=4", "model.backbone.depths=[1, 1]", "data.image_size=32",
                 "data.workers=0", "train.epochs=1", "train.batch_size=16"]
    config = Path(__file__).resolve().parents[1] / "configs" / "classify.yaml"
    args = ["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    assert main(["val", str(tmp_path / "run" / "weights" / "best.pt"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "val" / "metrics.json").read_text())
    confusion = metrics["confusion_matrix"]
    assert len(confusion) == 5 and sum(map(sum, confusion)) == 20  # every val image, once
    # Three routes to one number: the matrix's diagonal, `val`, and the epoch's row in metrics.csv.
    assert metrics["top1"] == pytest.approx(sum(confusion[i][i] for i in range(5)) / 20)
    row = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    epoch = dict(zip(row[0].split(","), row[1].split(","), strict=True))
    assert float(epoch["val_top1"]) == pytest.approx(metrics["top1"], abs=1e-6)
    assert float(epoch["val_top5"]) == pytest.approx(metrics["top5"], abs=1e-6)
    assert "top1" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    assert main(["val", str(tmp_path / "missing.pt")]) == 2
    assert main(["train", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert "missing.pt" in err[0] and "nothing to resume" in err[1]


def test_a_corrupt_training_image_is_skipped_and_reported(tiny_classify_data, tiny_config,
                                                         tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(tiny_classify_data, data)
    (data / "train" / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cfg = tiny_config(data)
    with pytest.warns(UserWarning, match="skipping bad image: .*broken.png"):
        result = Trainer(cfg, tmp_path / "run", progress=False, log=quiet).fit()
    assert result.best.is_file()


def test_data_synth_cli_writes_an_imagefolder(tmp_path: Path) -> None:
    assert main(["data", "synth", "classify", str(tmp_path / "s"), "--train", "10", "--val", "5",
                 "--size", "32", "--seed", "3"]) == 0
    assert len(list((tmp_path / "s" / "train").rglob("*.png"))) == 10
    assert sorted(p.name for p in (tmp_path / "s" / "val").iterdir()) == sorted(
        ["circle", "square", "triangle", "star", "cross"])
