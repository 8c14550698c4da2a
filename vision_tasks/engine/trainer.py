"""The training loop, readable top to bottom: data -> model -> state -> epochs.

A run folder holds ``weights/last.pt`` (every epoch) and ``weights/best.pt`` (best
validation ``primary_metric``), ``metrics.csv``, ``config.yaml`` (the resolved
config), ``curves.png`` and ``tensorboard/``. ``resume=True`` continues from
``last.pt`` with the same epoch, optimizer, schedule, EMA and random state, so an
interrupted run ends where an uninterrupted one would.

Everything an epoch changes lives in one :class:`TrainState`; ``last.pt`` is its
:meth:`~TrainState.state_dict` plus what describes the model (task, class names,
config), and ``--resume`` loads it back with :meth:`~TrainState.load_state_dict`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from vision_tasks.config import Config, TrainConfig, save_config
from vision_tasks.engine.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from vision_tasks.engine.distributed import Dist, from_environment, gather, process_device, setup
from vision_tasks.engine.divergence import check_loss, check_weights
from vision_tasks.engine.ema import ModelEMA
from vision_tasks.engine.evaluate import format_metrics, scalar_metrics
from vision_tasks.engine.heads import to_device
from vision_tasks.engine.optim import build_optimizer, build_scheduler
from vision_tasks.engine.plan import training_plan
from vision_tasks.engine.precision import amp_dtype, amp_note
from vision_tasks.engine.runlog import (
    TRAIN_FILES,
    TensorBoardLog,
    check_run_folder,
    plot_curves,
    plot_names,
    remove_earlier_run,
    write_metrics_csv,
)
from vision_tasks.errors import CheckpointError, ConfigError, DeviceError
from vision_tasks.models.weights import load_model_weights

EpochCallback = Callable[["Trainer", int, dict[str, Any]], None]
Criterion = Callable[[Any, Any], tuple[torch.Tensor, dict[str, torch.Tensor]]]

TRAINING_ONLY = ("optimizer", "scheduler", "scaler")
"""Checkpoint keys that ``last.pt`` holds for ``--resume`` and ``best.pt`` leaves out."""
CURVES_EVERY_S = 30.0
"""curves.png (and the best epoch's evaluation plots) are drawn after the last epoch, and
after an epoch when this many seconds have passed since they were last drawn (a figure of a
multi-head run's 30 panels takes seconds to draw: per epoch it would cost short epochs more
than their training); metrics.csv, TensorBoard and the checkpoints are written every epoch."""


@dataclass
class TrainResult:
    run_dir: Path
    best: Path
    last: Path
    primary_metric: str
    best_metric: float
    metrics: dict[str, Any]
    epochs: int
    seconds: float


def select_device(name: str, key: str = "train.device", fix: str = "use cpu or auto") -> torch.device:
    """``auto`` (a CUDA GPU when visible, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``;
    a :class:`DeviceError` naming ``key`` (and ``fix``) for anything this machine cannot run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{key}: unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{key}: '{name}' asked for, but no CUDA GPU is visible; {fix}")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"{key}: '{name}' asked for, but this machine has "
                          f"{torch.cuda.device_count()} CUDA GPU(s); use cuda:0 .. "
                          f"cuda:{torch.cuda.device_count() - 1}, or auto")
    return device


@dataclass
class TrainState:
    """What training changes, step by step and epoch by epoch, and nothing else."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEMA | None
    scaler: torch.amp.GradScaler
    epoch: int = 0  # the last finished epoch (1-based); 0 before the first
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics row per epoch
    best: float = float("-inf")  # best validation primary metric so far
    ddp: nn.Module | None = None  # under DDP: the model wrapped, whose backward syncs gradients

    @classmethod
    def start(cls, model: nn.Module, cfg: TrainConfig, steps_per_epoch: int,
              amp: torch.dtype | None, device: torch.device) -> TrainState:
        """Epoch 0 of ``model``: a fresh optimizer, schedule, EMA and gradient scaler."""
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
        ema = ModelEMA(model, cfg.ema_decay, cfg.epochs * steps_per_epoch) if cfg.ema else None
        scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        return cls(model, optimizer, scheduler, ema, scaler)

    @property
    def eval_model(self) -> nn.Module:
        """The model to validate and keep: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self, rng_by_rank: list[Any] | None = None) -> dict[str, Any]:
        """The checkpoint entries of this state, random generators included (under DDP
        ``rng_by_rank``: every process's, from :func:`rng_state`)."""
        rng = rng_state()
        ema = self.ema
        return {"model": self.model.state_dict(), "ema": ema.module.state_dict() if ema else None,
                "ema_updates": ema.updates if ema else 0, "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "history": self.history, "best_metric": self.best, "rng": rng,
                **({"rng_by_rank": rng_by_rank} if rng_by_rank and len(rng_by_rank) > 1 else {})}

    def load_state_dict(self, state: dict[str, Any], rank: int = 0, world: int = 1,
                        source: str | Path = "weights/last.pt") -> None:
        """Continue from ``state`` (a :meth:`state_dict`), random generators included: under
        DDP each process its own, when the run had as many processes."""
        load_model_weights(self.model, state["model"], source, "this run's model",
                           "resume only from the last.pt this run wrote")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None and state.get("ema"):
                self.ema.module.load_state_dict(state["ema"])
                self.ema.updates = int(state["ema_updates"])
            epoch, history = state["epoch"], state["history"]
            if not (isinstance(epoch, int) and epoch >= 0 and isinstance(history, list)
                    and all(isinstance(row, dict) for row in history)):
                raise ValueError("epoch or history of another form")
            self.epoch, self.history = epoch, list(history)
            self.best = float(state["best_metric"])
            by_rank = state.get("rng_by_rank") or []
            rng = by_rank[rank] if len(by_rank) == world else state["rng"]
            torch.set_rng_state(rng["cpu"])
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
            what = f"no {err}" if isinstance(err, KeyError) else str(err).splitlines()[0][:120]
            raise CheckpointError(f"{source}: its training state is damaged or not one "
                                  f"this version wrote ({what}); --resume needs the last.pt "
                                  "its run wrote: start a new run into another --out") from None
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


@dataclass(frozen=True)
class StepSettings:
    device: torch.device
    amp: torch.dtype | None  # autocast dtype of the forward pass; None: full precision
    grad_clip: float  # max gradient norm; 0 turns clipping off


def train_step(state: TrainState, images: torch.Tensor, targets: Any, criterion: Criterion,
               settings: StepSettings) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimizer step on a batch (``images`` float [N, 3, S, S] on the device); returns
    the loss and its parts. The schedule and the EMA advance once per step."""
    autocast = (torch.autocast(settings.device.type, dtype=settings.amp) if settings.amp
                else contextlib.nullcontext())
    with autocast:
        outputs = (state.ddp or state.model)(images)
    loss, parts = criterion(_to_float(outputs), targets)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if settings.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), settings.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model)
    return loss, parts


def train_one_epoch(state: TrainState, loader: Any, criterion: Criterion, settings: StepSettings,
                    desc: str = "train", progress: bool = True) -> dict[str, float]:
    """A pass over ``loader``; returns the per-image mean of the loss and of each part
    (``train_loss``, ``train_<part>``)."""
    state.model.train()
    totals: dict[str, float] = {}
    seen, t0 = 0, time.time()
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, unit="batch")
    for step, (images, targets) in enumerate(bar, 1):
        # A batch per head that trains this step ({head: images}).
        images = _float_images(to_device(images, settings.device))
        targets = to_device(targets, settings.device)
        loss, parts = train_step(state, images, targets, criterion, settings)
        check_loss(loss, state, step, len(loader), settings.amp)
        n = sum(len(x) for x in images.values())
        seen += n
        for key, value in {"loss": loss, **parts}.items():
            totals[f"train_{key}"] = totals.get(f"train_{key}", 0.0) + float(value.detach()) * n
        bar.set_postfix(loss=f"{float(loss.detach()):.4f}",
                        lr=f"{state.optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{seen / max(time.time() - t0, 1e-9):.0f}")
    return {key: value / max(seen, 1) for key, value in totals.items()}


class Trainer:
    """``Trainer(cfg, run_dir).fit()`` trains a new run; ``Trainer(None, run_dir,
    resume=True).fit()`` continues one. ``callbacks`` are called as
    ``callback(trainer, epoch, row)`` after each epoch is saved."""

    def __init__(self, cfg: Config | None, run_dir: str | Path, resume: bool = False,
                 progress: bool = True, callbacks: list[EpochCallback] | None = None,
                 log: Callable[[str], None] = print, overwrite: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.weights_dir = self.run_dir / "weights"
        self.last_path, self.best_path = self.weights_dir / "last.pt", self.weights_dir / "best.pt"
        self.progress, self.callbacks, self.log = progress, callbacks or [], log
        self.resume_state: dict[str, Any] | None = None
        if resume:
            if not self.last_path.is_file():
                raise CheckpointError(f"{self.last_path}: nothing to resume; start the run without --resume")
            self.resume_state = load_checkpoint(self.last_path)
            missing = [k for k in ("config", *TRAINING_ONLY, "epoch", "history", "rng")
                       if k not in self.resume_state]
            if missing:
                raise CheckpointError(f"{self.last_path}: cannot resume from it (no {', '.join(missing)}); "
                                      "resume only from the last.pt a run wrote, or start a new run")
            cfg = checkpoint_config(self.resume_state, self.last_path)
        elif cfg is None:
            raise ConfigError("Trainer: a config is needed to start a new run; pass one, or resume=True")
        elif self.last_path.is_file() and not overwrite:
            raise CheckpointError(f"{self.run_dir} already holds a training run; continue it with "
                                  "--resume, choose another --out, or pass --overwrite to start "
                                  "again")
        elif os.environ.get("RANK", "0") == "0":  # under torchrun, process 0 writes the folder
            check_run_folder(self.run_dir, [*TRAIN_FILES, *plot_names(
                None if cfg.single_task else list(cfg.heads))], overwrite, "train")
            if overwrite and self.last_path.is_file():
                remove_earlier_run(self.run_dir)
        self.cfg: Config = cfg

    def fit(self) -> TrainResult:
        cfg, tcfg = self.cfg, self.cfg.train
        torch.manual_seed(tcfg.seed)
        # One process, or one of torchrun's (engine/distributed.py: the global batch is
        # shared out, process 0 validates and writes the run folder).
        dist = from_environment()
        device = process_device(select_device(tcfg.device), dist)
        dist = setup(device)
        main = dist.is_main
        log = self.log if main else _quiet
        progress = self.progress and main

        # Data, model and loss of every head of the config (one for a single task). Batch
        # order and augmentation depend only on (seed, epoch, index), so any number of
        # workers, and a resumed run, see the same batches.
        plan = training_plan(cfg, load_pretrained=self.resume_state is None, dist=dist)
        model = plan.model.to(device)
        if tcfg.sync_bn and dist.enabled:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # The state that training changes (restored when resuming).
        settings = StepSettings(device, amp_dtype(tcfg.amp, device), tcfg.grad_clip)
        state = TrainState.start(model, tcfg, len(plan.loader), settings.amp, device)
        if dist.enabled:
            state.ddp = DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if self.resume_state is not None:
            state.load_state_dict(self.resume_state, dist.rank, dist.world, self.last_path)
            log(f"resuming {self.run_dir} after epoch {state.epoch} of {tcfg.epochs}")
        elif main:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
        header = plan.header  # what describes the model in every checkpoint
        if main:
            save_config(cfg, self.run_dir / "config.yaml")
        log(f"{plan.describe} | backbone {cfg.model.backbone.name} | device {device}, "
            f"{amp_note(tcfg.amp, device)}"
            + (f" | {dist.world} processes (DDP), {tcfg.batch_size // dist.world} images each "
               "per step" if dist.enabled else ""))

        board = (TensorBoardLog(self.run_dir / "tensorboard",
                                purge_step=state.epoch + 1 if state.epoch else None) if main else None)
        t0, metrics = time.time(), {}
        drawn = time.monotonic()  # when curves.png was last drawn
        best_plots: Any = None  # the evaluator of a best epoch whose plots are not drawn yet
        try:
            for epoch in range(state.epoch + 1, tcfg.epochs + 1):
                plan.set_epoch(epoch)
                losses = train_one_epoch(state, plan.loader, plan.criterion, settings,
                                         f"epoch {epoch}/{tcfg.epochs}", progress)
                check_weights(state, epoch)  # nothing of a diverged epoch is saved
                losses = mean_over_processes(losses, dist)
                state.epoch = epoch
                rng_by_rank = gather(rng_state(), dist)
                row: dict[str, Any] = {"epoch": epoch}
                if main:
                    metrics, evaluator = plan.validate(state.eval_model, device, progress)
                    score = float(metrics[plan.primary_metric])
                    row = {"epoch": epoch, **losses, "lr": state.optimizer.param_groups[0]["lr"],
                           **{f"val_{k}": v for k, v in scalar_metrics(metrics).items()}}
                    improved = score > state.best
                    state.best = max(state.best, score)
                    state.history.append(row)

                    checkpoint = {**header, **state.state_dict(rng_by_rank)}
                    save_checkpoint(self.last_path, checkpoint)
                    if improved:
                        save_checkpoint(self.best_path, {k: v for k, v in checkpoint.items()
                                                         if k not in TRAINING_ONLY})
                        best_plots = evaluator  # the best epoch's plots, drawn when due
                    write_metrics_csv(state.history, self.run_dir / "metrics.csv")
                    if epoch == tcfg.epochs or time.monotonic() - drawn >= CURVES_EVERY_S:
                        plot_curves(state.history, self.run_dir / "curves.png")
                        if best_plots is not None:
                            best_plots.save_plots(self.run_dir)
                        drawn, best_plots = time.monotonic(), None
                    board.log(row, epoch)
                    log(f"epoch {epoch}/{tcfg.epochs}  loss {losses['train_loss']:.4f}  "
                        f"{format_metrics(metrics)}" + ("  (best)" if improved else ""))
                dist.barrier()  # the others wait for process 0's validation and checkpoint
                for callback in self.callbacks:
                    callback(self, epoch, row)
        finally:
            if board is not None:
                board.close()
        return TrainResult(self.run_dir, self.best_path, self.last_path, plan.primary_metric, state.best,
                           metrics, tcfg.epochs, time.time() - t0)


def rng_state() -> dict[str, Any]:
    """This process's random generators (CPU, and every GPU's when there are GPUs)."""
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def mean_over_processes(values: dict[str, float], dist: Dist) -> dict[str, float]:
    """Each value's mean over the processes that have it (every process's shard has as many
    images); ``values`` itself on one process."""
    if not dist.enabled:
        return values
    per_process = gather(values, dist)
    keys = dict.fromkeys(k for v in per_process for k in v)
    return {k: sum(v[k] for v in per_process if k in v) / sum(k in v for v in per_process)
            for k in keys}


def _quiet(_: str) -> None:
    pass


def _float_images(images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: batch.float() for name, batch in images.items()}


def _to_float(outputs: Any) -> Any:
    """Losses are computed in float32 even when the forward ran in half precision."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    if isinstance(outputs, list | tuple):
        return type(outputs)(_to_float(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _to_float(v) for k, v in outputs.items()}
    return outputs
