"""`vision-tasks predict --engine ray`: a local Ray (2 CPUs) writes what the local engine writes.

The run starts its own Ray, under a timeout, and stops it; the test then checks that no
process Ray started is left."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from vision_tasks.export.onnx_export import export_checkpoint

from vision_tasks.cli import main
from vision_tasks.errors import ConfigError

ray = pytest.importorskip("ray")  # the ray extra (scripts/setup.sh installs it)

IMAGES = 200
RAY_TIMEOUT_S = 120  # the run takes ~20 s on 2 busy cores; a hang fails instead of blocking CI
OUTPUTS = ("predictions.jsonl", "errors.jsonl", "run.json")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              # Ray Data reads its own deprecated settings when it ships its context to workers
              pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data")]


@pytest.fixture(scope="module")
def model_path(tiny_classify_run, tmp_path_factory) -> Path:
    return export_checkpoint(tiny_classify_run.best, tmp_path_factory.mktemp("ray") / "m.onnx").path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """200 images of assorted sizes in two folders, one named in bytes that are not UTF-8,
    and 3 broken files (empty, truncated, text)."""
    root = tmp_path_factory.mktemp("ray-images")
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        h, w = (int(v) for v in rng.integers(16, 80, 2))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = f"{i:03d}.png" if i else os.fsdecode(b"caf\xe9.png")
        cv2.imwrite(os.fsencode(folder / name), pixels)
    (root / "a" / "empty.jpg").write_bytes(b"")
    jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))[1].tobytes()
    (root / "b" / "truncated.jpg").write_bytes(jpeg[:300])
    (root / "b" / "text.png").write_text("not an image\n")
    return root


def _ray_processes() -> set[int]:
    """Live child processes of this one (Ray's GCS, raylet, workers... when it runs)."""
    me, found = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == me and state != "Z":
            found.add(int(entry))
    return found


@contextmanager
def timeout(seconds: int) -> Iterator[None]:
    def expire(signum, frame):
        raise TimeoutError(f"the Ray run took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _predict(model: Path, source: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(model), str(source), "--out", str(out), "--quiet",
                 "--batch-size", "16", *extra])


def test_ray_writes_what_the_local_engine_writes_and_resume_writes_nothing_new(
        model_path, images, tmp_path, capsys, monkeypatch):
    assert _predict(model_path, images, tmp_path / "local") == 0
    capsys.readouterr()
    # a local Ray of 2 CPUs, whatever this machine has
    monkeypatch.setattr("vision_tasks.export.runtime.ray_engine.cpu_threads", lambda: 2)
    before = _ray_processes()
    try:
        with timeout(RAY_TIMEOUT_S):
            assert _predict(model_path, images, tmp_path / "ray", "--engine", "ray") == 0
        assert f"predicted {IMAGES} images, 3 errors" in capsys.readouterr().out
        for name in OUTPUTS:
            local, on_ray = (tmp_path / "local" / name).read_bytes(), (tmp_path / "ray" / name).read_bytes()
            assert on_ray == local, name
        written = {name: (tmp_path / "ray" / name).read_bytes() for name in OUTPUTS}
        assert b"caf\\\\xe9.png" in written["predictions.jsonl"]  # a name not UTF-8, as locally
        with timeout(RAY_TIMEOUT_S):
            assert _predict(model_path, images, tmp_path / "ray", "--engine", "ray", "--resume") == 0
        assert f"predicted 0 images, 0 errors, {IMAGES + 3} skipped" in capsys.readouterr().out
        assert {name: (tmp_path / "ray" / name).read_bytes() for name in OUTPUTS} == written
    finally:
        if ray.is_initialized():  # the run failed before it could stop its Ray
            ray.shutdown()
        deadline = time.monotonic() + 20
        while (left := _ray_processes() - before) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:  # clean up, then fail below
            os.kill(pid, signal.SIGKILL)
    assert not left, f"Ray left processes behind: {sorted(left)}"


def test_engine_ray_without_the_ray_extra_is_one_line_naming_it(model_path, images, tmp_path,
                                                                 capsys, monkeypatch):
    for module in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "vision_tasks.export.runtime.ray_engine", raising=False)
    assert _predict(model_path, images, tmp_path / "out", "--engine", "ray") == 2
    assert capsys.readouterr().err == (
        "error: vision-tasks predict --engine ray needs the ray extra (ray is not installed): "
        "pip install 'vision-tasks[ray]'\n")
    assert not (tmp_path / "out").exists()


def test_ray_options_need_engine_ray_and_a_cuda_device_needs_gpus_per_actor(
        model_path, images, tmp_path, capsys):
    assert _predict(model_path, images, tmp_path / "out", "--num-actors", "2") == 2
    assert "--num-actors is an option of --engine ray" in capsys.readouterr().err
    assert _predict(model_path, images, tmp_path / "out", "--engine", "ray", "--device", "cuda") == 2
    assert "pass --gpus-per-actor" in capsys.readouterr().err
    assert _predict(model_path, images, tmp_path / "out", "--engine", "ray", "--workers", "4") == 2
    assert "--workers is an option of the local engine" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_actor_pool_fits_the_nodes_and_leaves_a_cpu_to_decoding(monkeypatch):
    from vision_tasks.export.runtime.ray_engine import RayOptions, _num_actors

    def cluster(*nodes: dict) -> None:
        monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True, "Resources": n} for n in nodes])

    cluster({"CPU": 2.0})
    assert _num_actors(RayOptions()) == 1
    with pytest.raises(ConfigError, match=r"\(2 CPUs, 0 GPUs\) has room for 1 model actor of 1 "
                                          r"CPU each, one CPU kept for decoding; pass --num-actors 1"):
        _num_actors(RayOptions(num_actors=2))
    cluster({"CPU": 16.0}, {"CPU": 16.0})
    assert _num_actors(RayOptions()) == 16 and _num_actors(RayOptions(threads=4)) == 4
    cluster({"CPU": 8.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0})  # 0.75 GPU: one per node
    assert _num_actors(RayOptions(gpus_per_actor=0.75)) == 2
    assert _num_actors(RayOptions(gpus_per_actor=0.5)) == 4
    with pytest.raises(ConfigError, match="pass --gpus-per-actor 0 for CPU actors"):
        cluster({"CPU": 8.0})
        _num_actors(RayOptions(gpus_per_actor=1))
