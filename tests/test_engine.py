"""The training engine's parts: the learning-rate schedule, the EMA ramp, gradient clipping,
loader workers, the detect FPN neck, and one-line errors for what a user can get wrong."""

from __future__ import annotations

import dataclasses
import math
import signal
from pathlib import Path

import pytest
import torch
from testkit import coco_config
from torch import nn

from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.ema import ModelEMA
from vision_tasks.engine.optim import OPTIMIZERS, build_optimizer, build_scheduler, warmup_cosine
from vision_tasks.engine.trainer import StepSettings, Trainer, TrainState, select_device, train_step
from vision_tasks.errors import ConfigError, DeviceError
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

CPU = torch.device("cpu")


def quiet(_: str) -> None:
    pass


# --- learning-rate schedule ------------------------------------------------------------------

def test_warmup_cosine_factors_at_start_end_of_warmup_middle_and_end() -> None:
    factor = warmup_cosine(total_steps=110, warmup_steps=10, final_factor=0.1)
    assert factor(0) == pytest.approx(0.01)
    assert factor(5) == pytest.approx(0.01 + 0.99 * 0.5)
    assert factor(10) == pytest.approx(1.0)  # warm-up done: the full rate
    assert factor(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert factor(110) == pytest.approx(0.1)
    assert factor(500) == pytest.approx(0.1)  # past the end it stays at the final rate


def test_scheduler_rises_during_warmup_then_falls_to_lr_final(tiny_classify_data, tiny_config) -> None:
    cfg = tiny_config(tiny_classify_data, "train.epochs=4", "train.warmup_epochs=1", "train.lr=0.1",
                      "train.lr_final=0.05", "train.optimizer=sgd").train
    optimizer = build_optimizer(nn.Linear(2, 2), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=5)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1 * 0.01)
    assert lrs[5] == pytest.approx(0.1)  # one epoch of 5 steps of warm-up
    assert lrs[20] == pytest.approx(0.1 * 0.05)
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:6], strict=True))
    assert all(a > b for a, b in zip(lrs[5:20], lrs[6:21], strict=True))


def test_warmup_is_at_most_half_the_run(tiny_classify_data, tiny_config) -> None:
    cfg = tiny_config(tiny_classify_data, "train.epochs=2", "train.warmup_epochs=10").train
    optimizer = build_optimizer(nn.Linear(2, 2), cfg)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=5)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs.index(max(lrs)) == 5 and max(lrs) == pytest.approx(cfg.lr)


# --- EMA ---------------------------------------------------------------------------------------

def test_ema_decay_ramps_up_with_updates_and_is_capped_on_short_runs() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = ModelEMA(model, decay=0.999, total_steps=200)
    assert ema.decay == pytest.approx(0.9)  # 1 - 20 / 200: spans ~5 % of a short run
    assert ema.tau == pytest.approx(20.0)  # a tenth of the run
    with torch.no_grad():
        model.weight.fill_(0.0)
    expected = 1.0
    for updates in range(1, 61):
        ema.update(model)  # ema = d * ema + (1 - d) * 0
        expected *= 0.9 * (1 - math.exp(-updates / 20))
        assert float(ema.module.weight) == pytest.approx(expected, rel=1e-5), updates
    assert ema.updates == 60


def test_ema_decay_and_ramp_of_a_long_run() -> None:
    ema = ModelEMA(nn.Linear(1, 1), decay=0.999, total_steps=1_000_000)
    assert ema.decay == 0.999 and ema.tau == 2000.0


def test_ema_copies_buffers_instead_of_averaging_them() -> None:
    model = nn.BatchNorm1d(3)
    ema = ModelEMA(model, decay=0.999, total_steps=1000)
    model.running_mean.fill_(5.0)
    ema.update(model)
    assert torch.equal(ema.module.running_mean, model.running_mean)


# --- one optimizer step ----------------------------------------------------------------------

def _sgd_state(lr: float) -> TrainState:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return TrainState(model, optimizer, scheduler, None, torch.amp.GradScaler("cpu", enabled=False))


def _huge_loss(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    return 1e6 * (outputs - targets).square().mean(), {}


@pytest.mark.parametrize("clip", [0.5, 2.0])
def test_gradient_clipping_bounds_an_sgd_step_to_lr_times_clip(clip: float) -> None:
    lr = 0.1
    state = _sgd_state(lr)
    before = torch.cat([p.detach().flatten().clone() for p in state.model.parameters()])
    images, targets = torch.ones(2, 4), torch.full((2, 1), 100.0)
    train_step(state, images, targets, _huge_loss, StepSettings(CPU, None, grad_clip=clip))
    after = torch.cat([p.detach().flatten() for p in state.model.parameters()])
    assert float((after - before).norm()) == pytest.approx(lr * clip, rel=1e-4)


def test_without_clipping_a_huge_loss_moves_the_weights_far() -> None:
    lr = 0.1
    state = _sgd_state(lr)
    before = torch.cat([p.detach().flatten().clone() for p in state.model.parameters()])
    train_step(state, torch.ones(2, 4), torch.full((2, 1), 100.0), _huge_loss,
               StepSettings(CPU, None, grad_clip=0.0))
    after = torch.cat([p.detach().flatten() for p in state.model.parameters()])
    assert float((after - before).norm()) > 1000 * lr


def test_train_step_advances_schedule_and_ema_once() -> None:
    state = _sgd_state(0.1)
    state.ema = ModelEMA(state.model, 0.999, 100)
    train_step(state, torch.ones(2, 4), torch.zeros(2, 1), _huge_loss, StepSettings(CPU, None, 1.0))
    assert state.scheduler.last_epoch == 1 and state.ema.updates == 1


# --- loader workers ----------------------------------------------------------------------------

class _Timeout:
    """Fail (instead of hanging the suite) when worker processes do not finish in time."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        def expire(signum, frame):
            raise TimeoutError(f"still running after {self.seconds} s")

        self.previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def test_two_loader_workers_train_the_same_weights_as_none(tiny_classify_run, tiny_classify_data,
                                                           tiny_config, tmp_path: Path) -> None:
    """Augmentation is seeded per (seed, epoch, index), so worker processes change nothing."""
    cfg = tiny_config(tiny_classify_data, "data.workers=2")  # tiny_classify_run: workers=0
    with _Timeout(120):
        Trainer(cfg, tmp_path / "run", progress=False, log=quiet).fit()
    single = load_checkpoint(tiny_classify_run.last)
    workers = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert workers["config"]["data"]["workers"] == 2
    for part in ("model", "ema"):
        for key, value in single[part].items():
            assert torch.equal(value, workers[part][key]), f"{part}.{key}"


# --- detect with an FPN neck -------------------------------------------------------------------

def test_detect_with_an_fpn_neck_builds_runs_forward_loss_and_a_training_step(tmp_path: Path) -> None:
    task = get_task("detect")
    task.synthesize(tmp_path / "data", 4, 2, 64, seed=0)
    tiny = ["model.backbone.name=simple_cnn", "model.backbone.width=8",
            "model.backbone.depths=[1, 1, 1, 1, 1]", "model.head.channels=16", "model.head.hidden=16",
            "model.head.depth=1", "data.image_size=64", "data.workers=0"]
    cfg = coco_config("detect", tmp_path / "data", *tiny, "model.head.neck=fpn")
    torch.manual_seed(0)
    dataset = task.build_dataset(cfg, "train", train=False)
    images, targets = task.collate([dataset[i] for i in range(4)])
    model = build_model(cfg, task, len(dataset.class_names)).train()
    necks = [m for m in model.modules() if getattr(m, "kind", None) in ("fpn", "pan")]
    assert [n.kind for n in necks] == ["fpn"]
    loss_fn = task.build_loss(cfg, model.head)
    optimizer = build_optimizer(model, cfg.train)
    loss, parts = loss_fn(model(images.float())["detect"], targets)
    assert loss.ndim == 0 and torch.isfinite(loss) and parts
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    with torch.no_grad():
        model.eval()(images.float())  # the inference forward runs too


# --- errors a user can trigger -----------------------------------------------------------------

def test_optimizers_are_one_table_of_every_configurable_name() -> None:
    from typing import get_args, get_type_hints

    from vision_tasks.config import TrainConfig

    assert set(OPTIMIZERS) == set(get_args(get_type_hints(TrainConfig)["optimizer"]))
    for name in OPTIMIZERS:
        optimizer = build_optimizer(nn.Linear(2, 2), dataclasses.replace(TrainConfig(), optimizer=name))
        assert isinstance(optimizer, torch.optim.Optimizer)


def test_a_model_with_nothing_to_train_is_a_config_error_naming_freeze() -> None:
    from vision_tasks.config import TrainConfig

    model = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ConfigError, match=r"^model\.backbone\.freeze: .*nothing to train"):
        build_optimizer(model, TrainConfig())


def test_unknown_or_missing_devices_are_device_errors_naming_the_key() -> None:
    with pytest.raises(DeviceError, match=r"^--device: unknown device 'gpu'; use auto, cpu"):
        select_device("gpu", "--device")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"^train\.device: 'cuda' asked for, but no CUDA GPU"):
            select_device("cuda")
    with pytest.raises(DeviceError, match=r"cuda:99' asked for"):
        select_device("cuda:99")
    assert select_device("cpu") == CPU


def test_val_on_a_missing_gpu_is_one_line_naming_device(tiny_classify_run, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    from vision_tasks.cli import main

    assert main(["val", str(tiny_classify_run.best), "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --device: 'cuda' asked for, but no CUDA GPU is visible; use cpu or auto"]
    assert main(["val", str(tiny_classify_run.best), "--set", "train.device=cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("best.pt: train.device: 'cuda' asked for, but no CUDA GPU "
                                             "is visible; pass --device cpu or auto")


def test_runtime_unknown_device_is_a_device_error() -> None:
    from vision_tasks.export.runtime.providers import create_session

    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        create_session(b"", device="tpu")


def test_val_with_overrides_that_change_the_model_is_a_checkpoint_error(tiny_classify_run) -> None:
    from vision_tasks.engine.checkpoint import model_from_checkpoint
    from vision_tasks.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"best\.pt: its weights do not fit .*model\.\* keys"):
        model_from_checkpoint(tiny_classify_run.best, ["model.backbone.width=8"])
