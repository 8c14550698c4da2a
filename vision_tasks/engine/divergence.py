"""A run whose loss or weights become NaN or infinite stops at once, saying where and the
likely cause; the checkpoints of the last good epoch stay as they were (nothing of the bad
epoch is saved), and ``export`` refuses weights that are not finite."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vision_tasks.errors import TrainingDiverged


def non_finite_tensors(tensors: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or infinity."""
    return [name for name, value in tensors.items()
            if isinstance(value, Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def check_loss(loss: Tensor, state: Any, step: int, steps: int, amp: torch.dtype | None) -> None:
    """Stop at the first step whose loss is not finite (``state``: the
    :class:`~vision_tasks.engine.trainer.TrainState`, whose ``epoch`` is the last finished
    one). Under DDP every process learns of any process's bad loss, so all stop together."""
    bad = torch.tensor(0.0 if bool(torch.isfinite(loss.detach())) else 1.0, device=loss.device)
    if state.ddp is not None:
        torch.distributed.all_reduce(bad)
    if not bad.item():
        return
    epoch = state.epoch + 1
    lr = state.optimizer.param_groups[0]["lr"]
    raise TrainingDiverged(f"training stopped at epoch {epoch}, step {step} of {steps}: the loss "
                           f"is {float(loss.detach())}; the likely cause is "
                           f"{_likely_cause(lr, amp)}; {_kept(epoch)}")


def check_weights(state: Any, epoch: int) -> None:
    """Stop before epoch ``epoch`` is validated or saved when a weight (or the EMA's) is no
    longer finite, though every loss was."""
    bad = non_finite_tensors(state.model.state_dict())
    if state.ema is not None:
        bad += [f"ema {name}" for name in non_finite_tensors(state.ema.module.state_dict())]
    if not bad:
        return
    lr = state.optimizer.param_groups[0]["lr"]
    raise TrainingDiverged(f"training stopped after epoch {epoch}: {len(bad)} weight tensors hold "
                           f"NaN or infinity (e.g. {bad[0]}); the likely cause is "
                           f"{_likely_cause(lr, None)}; {_kept(epoch)}")


def _likely_cause(lr: float, amp: torch.dtype | None) -> str:
    if amp == torch.float16:
        return ("a float16 overflow (train.amp: fp16; use bf16 or off) or a learning rate too "
                f"high (lr {lr:.3g} at this step)")
    return (f"a learning rate too high for this model (lr {lr:.3g} at this step): start a new "
            "run with a lower train.lr")


def _kept(epoch: int) -> str:
    if epoch <= 1:
        return "no checkpoint was written"
    return (f"weights/last.pt and best.pt still hold epoch {epoch - 1} or earlier, the last good "
            "ones")
