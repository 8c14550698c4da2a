"""Training on 2 processes (DDP over gloo, started by torchrun, as on a machine with 2 GPUs):
the same weights as 1 process with the same global batch, one run folder, exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vision_tasks.config import load_config, save_config
from vision_tasks.engine.checkpoint import load_checkpoint
from vision_tasks.engine.trainer import Trainer
from vision_tasks.engine.validate import validate_model
from vision_tasks.task_api import get_task

TIMEOUT = 150  # seconds for one torchrun launch (two processes)

# LeNet-5 has no batch norm: each process's statistics would differ from one process's.
LENET = ["model.backbone.name=lenet5", "data.image_size=32", "data.workers=0",
         "train.batch_size=8", "train.epochs=2", "train.warmup_epochs=0", "train.lr=0.01",
         "train.amp=off"]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``argv`` in its own process group, killed whole on timeout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(argv)} did not finish in {TIMEOUT} s:\n{out[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out)


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            *args]


@pytest.fixture(scope="module")
def lenet_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    get_task("classify").synthesize(root / "data", 32, 16, 32, seed=0)
    cfg = load_config(None, [f"data.train={root / 'data' / 'train'}",
                             f"data.val={root / 'data' / 'val'}", *LENET], base={"task": "classify"})
    save_config(cfg, root / "lenet.yaml")
    return root / "lenet.yaml"


def weights(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "weights" / "last.pt")


def test_two_processes_with_half_the_batch_each_give_one_process_weights(lenet_config, tmp_path):
    one = Trainer(load_config(lenet_config), tmp_path / "one", progress=False, log=lambda _: None).fit()
    result = run(torchrun("-m", "vision_tasks", "train", str(lenet_config), "--out",
                          str(tmp_path / "two"), "--quiet"), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 processes (DDP), 4 images each per step" in result.stdout
    a, b = weights(one.run_dir), weights(tmp_path / "two")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, atol=1e-5, rtol=0, msg=f"{part}.{key}")
    # One run folder, written by process 0 alone; its numbers are a single process's.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in one.run_dir.iterdir())
    metrics, _ = validate_model(tmp_path / "two" / "weights" / "last.pt", [],
                                out_dir=tmp_path / "val", progress=False)
    assert b["history"][-1]["val_top1"] == metrics["top1"]


def test_a_ddp_run_interrupted_after_epoch_1_and_resumed_ends_with_the_uninterrupted_weights(
        lenet_config, tmp_path):
    straight = run(torchrun("-m", "vision_tasks", "train", str(lenet_config), "--out",
                            str(tmp_path / "straight"), "--quiet"), tmp_path)
    assert straight.returncode == 0, straight.stdout[-3000:]
    worker = tmp_path / "stop_after_1.py"  # each process stops after epoch 1, as on Ctrl-C
    worker.write_text(textwrap.dedent(f"""
        from vision_tasks.config import load_config
        from vision_tasks.engine.trainer import Trainer

        def stop(trainer, epoch, row):
            if epoch == 1:
                raise SystemExit(0)

        Trainer(load_config({str(lenet_config)!r}), {str(tmp_path / "resumed")!r},
                progress=False, callbacks=[stop]).fit()
    """))
    assert run(torchrun(str(worker)), tmp_path).returncode == 0
    assert weights(tmp_path / "resumed")["epoch"] == 1
    resumed = run(torchrun("-m", "vision_tasks", "train", "--out", str(tmp_path / "resumed"),
                           "--resume", "--quiet"), tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert a["epoch"] == b["epoch"] == 2 and len(b["rng_by_rank"]) == 2
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"


def test_the_global_batch_must_divide_among_the_processes(lenet_config, tmp_path):
    result = run(torchrun("-m", "vision_tasks", "train", str(lenet_config), "--out",
                          str(tmp_path / "odd"), "--quiet", "--set", "train.batch_size=7"), tmp_path)
    assert result.returncode != 0
    assert "train.batch_size: 7 is the global batch and must divide among the 2 processes" in result.stdout
