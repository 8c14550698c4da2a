"""The training loop, readable top to bottom: data -> model -> optimizer -> epochs.

A run folder holds ``weights/last.pt`` (every epoch) and ``weights/best.pt`` (best
validation ``primary_metric``), ``metrics.csv``, ``config.yaml`` (the resolved
config), ``curves.png`` and ``tensorboard/``. ``resume=True`` continues from
``last.pt`` with the same epoch, optimizer, schedule, EMA and random state, so an
interrupted run ends where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from vision_tasks.config import Config, save_config
from vision_tasks.data.sampler import EpochSampler
from vision_tasks.engine.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from vision_tasks.engine.ema import ModelEMA
from vision_tasks.engine.evaluate import evaluate, format_metrics, make_loader, scalar_metrics
from vision_tasks.engine.optim import build_optimizer, build_scheduler
from vision_tasks.engine.runlog import TensorBoardLog, plot_curves, write_metrics_csv
from vision_tasks.errors import CheckpointError
from vision_tasks.models.model import build_model
from vision_tasks.task_api import get_task

EpochCallback = Callable[["Trainer", int, dict[str, Any]], None]


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


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device: '{name}' asked for, but no CUDA GPU is visible; use cpu or auto")
    return torch.device(name)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on a GPU: bf16 where supported, else fp16."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


class Trainer:
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
            cfg = checkpoint_config(self.resume_state, self.last_path)
        elif cfg is None:
            raise ValueError("a config is needed to start a new run")
        elif self.last_path.is_file() and not overwrite:
            raise CheckpointError(f"{self.run_dir} already holds a training run; continue it with "
                                  "--resume or choose another --out")
        self.cfg: Config = cfg

    def fit(self) -> TrainResult:
        cfg, tcfg = self.cfg, self.cfg.train
        task = get_task(cfg.task)
        torch.manual_seed(tcfg.seed)
        device = select_device(tcfg.device)

        train_set = task.build_dataset(cfg, "train", train=True)
        names = train_set.class_names
        # Original ids of the classes (COCO sets), kept for the export's metadata.
        self.category_ids = getattr(train_set, "category_ids", None)
        val_set = task.build_dataset(cfg, "val", train=False, class_names=names)
        sampler = EpochSampler(len(train_set), tcfg.seed, shuffle=True)
        train_loader = make_loader(task, train_set, tcfg.batch_size, cfg.data.workers, sampler,
                                   tcfg.seed)
        val_loader = make_loader(task, val_set, tcfg.batch_size, cfg.data.workers)

        model = build_model(cfg, task, len(names), load_pretrained=self.resume_state is None).to(device)
        criterion = task.build_loss(cfg, len(names))
        optimizer = build_optimizer(model, tcfg)
        steps = len(train_loader)
        scheduler = build_scheduler(optimizer, tcfg, steps)
        ema = ModelEMA(model, tcfg.ema_decay, tcfg.epochs * steps) if tcfg.ema else None
        dtype = amp_dtype(tcfg.amp, device)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

        start, history, best = 0, [], float("-inf")
        if self.resume_state is not None:
            start, history, best = self._restore(model, optimizer, scheduler, ema, scaler, device)
            self.log(f"resuming {self.run_dir} after epoch {start} of {tcfg.epochs}")
        else:
            self.weights_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, self.run_dir / "config.yaml")
        self.log(f"task {cfg.task} | {len(names)} classes | {len(train_set)} train / {len(val_set)} val "
                 f"images | backbone {cfg.model.backbone.name} | device {device}"
                 + (f" ({dtype})" if dtype else ""))
        board = TensorBoardLog(self.run_dir / "tensorboard", purge_step=start + 1 if start else None)
        t0, metrics = time.time(), {}
        try:
            for epoch in range(start + 1, tcfg.epochs + 1):
                sampler.set_epoch(epoch)
                losses = self._train_epoch(model, train_loader, criterion, optimizer, scheduler, ema,
                                           scaler, dtype, device, epoch)
                metrics, evaluator = evaluate(ema.module if ema else model, task, val_loader, names,
                                              device, self.progress)
                score = float(metrics[task.primary_metric])
                row = {"epoch": epoch, **losses, "lr": optimizer.param_groups[0]["lr"],
                       **{f"val_{k}": v for k, v in scalar_metrics(metrics).items()}}
                history.append(row)
                improved = score > best
                best = max(best, score)
                payload = self._payload(cfg, names, model, optimizer, scheduler, ema, scaler,
                                        epoch, history, best)
                save_checkpoint(self.last_path, payload)
                if improved:
                    save_checkpoint(self.best_path, {k: v for k, v in payload.items()
                                                     if k not in ("optimizer", "scheduler", "scaler")})
                    evaluator.save_plots(self.run_dir)
                write_metrics_csv(history, self.run_dir / "metrics.csv")
                plot_curves(history, self.run_dir / "curves.png")
                board.log(row, epoch)
                self.log(f"epoch {epoch}/{tcfg.epochs}  loss {losses['train_loss']:.4f}  "
                         f"{format_metrics(metrics)}" + ("  (best)" if improved else ""))
                for callback in self.callbacks:
                    callback(self, epoch, row)
        finally:
            board.close()
        return TrainResult(self.run_dir, self.best_path, self.last_path, task.primary_metric, best,
                           metrics, tcfg.epochs, time.time() - t0)

    def _train_epoch(self, model, loader, criterion, optimizer, scheduler, ema, scaler, dtype,
                     device, epoch) -> dict[str, float]:
        model.train()
        totals: dict[str, float] = {}
        seen, t0 = 0, time.time()
        bar = tqdm(loader, desc=f"epoch {epoch}/{self.cfg.train.epochs}", leave=False,
                   disable=not self.progress, unit="batch")
        for images, targets in bar:
            images = images.to(device, non_blocking=True).float()
            targets = _to_device(targets, device)
            autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
            with autocast:
                outputs = model(images)
            loss, parts = criterion(_to_float(outputs), targets)
            loss_value = float(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if self.cfg.train.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            seen += len(images)
            for key, value in {"loss": loss, **parts}.items():
                totals[f"train_{key}"] = totals.get(f"train_{key}", 0.0) + float(value.detach()) * len(images)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                            img_s=f"{seen / max(time.time() - t0, 1e-9):.0f}")
        return {key: value / max(seen, 1) for key, value in totals.items()}

    def _payload(self, cfg, names, model, optimizer, scheduler, ema, scaler, epoch, history, best):
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"task": cfg.task, "class_names": list(names), "category_ids": self.category_ids,
                "config": cfg.to_dict(),
                "model": model.state_dict(), "ema": ema.module.state_dict() if ema else None,
                "ema_updates": ema.updates if ema else 0, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                "history": history, "best_metric": best, "rng": rng}

    def _restore(self, model, optimizer, scheduler, ema, scaler, device):
        state = self.resume_state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state.get("ema"):
            ema.module.load_state_dict(state["ema"])
            ema.updates = state["ema_updates"]
        torch.set_rng_state(state["rng"]["cpu"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        return state["epoch"], list(state["history"]), float(state["best_metric"])


def _to_device(targets: Any, device: torch.device) -> Any:
    if isinstance(targets, torch.Tensor):
        return targets.to(device, non_blocking=True)
    if isinstance(targets, list | tuple):
        return type(targets)(_to_device(t, device) for t in targets)
    if isinstance(targets, dict):
        return {k: _to_device(v, device) for k, v in targets.items()}
    return targets


def _to_float(outputs: Any) -> Any:
    """Losses are computed in float32 even when the forward ran in half precision."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float()
    if isinstance(outputs, list | tuple):
        return type(outputs)(_to_float(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: _to_float(v) for k, v in outputs.items()}
    return outputs
