"""The code paths a GPU takes, run on the CPU: the autocast dtype per device and
``train.amp``, the gradient scaler, ``cuda:N`` parsing (training and the runtime) and the
DDP backend (``nccl`` on GPUs). CUDA is simulated by patching ``torch.cuda``; nothing here
needs a GPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from vision_tasks.export.runtime.providers import create_session, parse_device

from vision_tasks.engine import distributed
from vision_tasks.engine.precision import amp_dtype, amp_note, cpu_bf16_units
from vision_tasks.engine.trainer import select_device
from vision_tasks.errors import DeviceError

CUDA = torch.device("cuda", 0)


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n, bf16=True)``: make torch report ``n`` CUDA GPUs (bf16-capable or not)."""
    def fake(n: int, bf16: bool = True) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    return fake


@pytest.mark.parametrize(("mode", "bf16", "expected"), [
    ("auto", True, torch.bfloat16), ("auto", False, torch.float16), ("bf16", False, torch.bfloat16),
    ("fp16", True, torch.float16), ("off", True, None)])
def test_cuda_autocast_dtype_follows_amp_and_the_gpus_bf16_support(gpus, mode, bf16, expected):
    gpus(1, bf16=bf16)
    assert amp_dtype(mode, CUDA) == expected
    assert amp_note(mode, CUDA).startswith({torch.bfloat16: "bf16", torch.float16: "fp16",
                                            None: "fp32"}[expected])


def test_cpu_autocast_is_bf16_only_where_asked_or_where_the_cpu_has_bf16_units():
    cpu = torch.device("cpu")
    assert amp_dtype("fp16", cpu) is None and amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) == torch.bfloat16
    assert amp_dtype("auto", cpu) == (torch.bfloat16 if cpu_bf16_units() else None)


def test_cpu_bf16_units_are_read_from_cpuinfo_and_missing_cpuinfo_means_none(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 amx_bf16 avx512f\n")
    assert cpu_bf16_units(info) == ("amx_bf16",)
    assert cpu_bf16_units(tmp_path / "absent") == ()


def _scaled_step(amp: torch.dtype | None, grad_value: float) -> tuple[torch.amp.GradScaler, bool]:
    """One optimizer step through the trainer's scaler rule (enabled for fp16 only) on a
    one-weight model whose gradient is ``grad_value``; returns the scaler and whether the
    weight moved."""
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=amp == torch.float16)
    before = model.weight.detach().clone()
    loss = model(torch.ones(1, 1)).sum() * grad_value
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return scaler, not torch.equal(before, model.weight.detach())


def test_the_gradient_scaler_runs_for_fp16_only_and_skips_steps_with_inf_gradients():
    scaler, moved = _scaled_step(torch.float16, 1.0)
    assert scaler.is_enabled() and moved
    scaler, moved = _scaled_step(torch.float16, float("inf"))
    assert not moved and scaler.get_scale() < 2.0 ** 16  # the scale backs off
    for amp in (torch.bfloat16, None):
        scaler, moved = _scaled_step(amp, 1.0)
        assert not scaler.is_enabled() and moved


def test_the_trainer_state_enables_its_scaler_for_fp16_autocast_only():
    from vision_tasks.config import load_config
    from vision_tasks.engine.trainer import TrainState

    cfg = load_config(None, ["train.ema=false"], base={"task": "classify"}).train
    model = nn.Linear(2, 2)
    cpu = torch.device("cpu")
    assert TrainState.start(model, cfg, 4, torch.float16, cpu).scaler.is_enabled()
    assert not TrainState.start(model, cfg, 4, torch.bfloat16, cpu).scaler.is_enabled()


def test_training_device_cuda_n_is_parsed_and_checked_against_the_gpus_present(gpus):
    gpus(2)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device("auto") == torch.device("cuda")
    with pytest.raises(DeviceError, match=r"train.device: 'cuda:2' asked for, but this machine "
                                          r"has 2 CUDA GPU\(s\); use cuda:0 .. cuda:1"):
        select_device("cuda:2")
    gpus(0)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        select_device("cuda:1")
    with pytest.raises(DeviceError, match="unknown device 'gpu1'"):
        select_device("gpu1")


def test_runtime_device_cuda_n_is_parsed_and_without_a_gpu_is_a_clear_error():
    assert parse_device("cuda:1") == ("cuda", 1)
    assert parse_device("auto") == ("auto", 0) and parse_device("cpu") == ("cpu", 0)
    for bad in ("cuda:x", "cuda:", "cuda:-1", "gpu"):
        with pytest.raises(DeviceError, match=f"unknown device '{bad}'"):
            parse_device(bad)
    from vision_tasks.export.runtime.providers import cuda_device_count

    if cuda_device_count() == 0:
        with pytest.raises(DeviceError, match="device 'cuda:1' asked for"):
            create_session(b"not a model", device="cuda:1")


def test_ddp_on_gpus_uses_nccl_on_the_local_rank_and_gloo_on_cpus(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.torch_dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.torch_dist, "init_process_group", calls.append)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(str(device)))
    dist = distributed.setup(torch.device("cuda", 1))
    assert calls == ["cuda:1", "nccl"] and dist.local_rank == 1
    assert distributed.process_device(torch.device("cuda"), dist) == torch.device("cuda", 1)
    calls.clear()
    distributed.setup(torch.device("cpu"))
    assert calls == ["gloo"]
    assert distributed.process_device(torch.device("cpu"), dist) == torch.device("cpu")
