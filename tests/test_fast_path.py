"""The runtime's fast path on the CPU provider: I/O binding gives the outputs of a plain
run and copies an output only when it is read; one session per lane or one shared; the
TensorRT provider options (engine cache beside the model, CUDA behind TensorRT); pinned
buffers absent without a GPU; and still no torch in the runtime."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from testkit import assert_runs_without_torch
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.fast_path import RuntimeOptions, engine_cache_dir
from vision_tasks.export.runtime.iobinding import BoundRunner, DeviceOutputs, pinned_buffer
from vision_tasks.export.runtime.providers import (
    CPU,
    CUDA,
    TENSORRT,
    _gpu_candidates,
    provider_chain,
    provider_options,
    trt_cache_dir,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TINY_DETECT = ["model.backbone.name=simple_cnn", "model.backbone.width=8",
               "model.backbone.depths=[1, 1, 1, 1, 1]", "model.head.channels=16",
               "model.head.hidden=16", "model.head.depth=1", "data.image_size=32",
               "data.workers=0", "train.epochs=1", "train.batch_size=8", "train.warmup_epochs=0"]


def trained_file(task: str, root: Path, overrides: list[str], size: int = 32) -> Path:
    """One short epoch of ``task`` on 8 synthetic images (the product's own train and
    export, opset 17: the fast exporter): a model to compare runtimes on."""
    from testkit import coco_config
    from vision_tasks.export.onnx_export import export_checkpoint

    from vision_tasks.engine.trainer import Trainer
    from vision_tasks.task_api import get_task

    get_task(task).synthesize(root / "data", 8, 4, size, seed=0)
    cfg = coco_config(task, root / "data", *overrides)
    best = Trainer(cfg, root / "run", progress=False, log=lambda _: None).fit().best
    return export_checkpoint(best, root / f"{task}.onnx", opset=17).path


@pytest.fixture(scope="module")
def detect_file(tmp_path_factory) -> Path:
    return trained_file("detect", tmp_path_factory.mktemp("fast"), TINY_DETECT)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def test_io_binding_gives_the_outputs_of_a_plain_run_and_copies_only_what_is_read(detect_file,
                                                                                  batch):
    plain = Predictor(detect_file, device="cpu", threads=1)
    bound = Predictor(detect_file, device="cpu", threads=1,
                      options=RuntimeOptions(io_binding=True))
    expected = plain.run(batch)
    outputs = bound.run(batch)
    assert isinstance(outputs, DeviceOutputs) and outputs.copied == ()
    assert outputs.device_of("boxes") == "cpu"
    np.testing.assert_array_equal(outputs["num_detections"], expected["num_detections"])
    assert outputs.copied == ("num_detections",)
    assert set(outputs) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(outputs[name], value)
    images = list(batch)
    assert [p.to_dict() for p in bound.predict(images)] == [p.to_dict() for p in plain.predict(images)]


def test_bound_runner_stages_on_the_cpu_without_pinned_memory_and_serves_threads(detect_file,
                                                                                 batch):
    predictor = Predictor(detect_file, device="cpu", threads=1)
    runner = BoundRunner(predictor.session, predictor.output_names, pinned=True)
    assert (runner.device, runner.pinned) == ("cpu", False)
    assert runner.pinned_note == "none on the CPU provider"
    results = [None] * 4

    def work(i: int) -> None:
        results[i] = runner.run(batch[i % 3:i % 3 + 1])["scores"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, scores in enumerate(results):
        np.testing.assert_array_equal(scores, predictor.run(batch[i % 3:i % 3 + 1])["scores"])


@pytest.mark.parametrize("shared", [True, False])
def test_lanes_share_one_session_or_build_one_each_with_the_same_outputs(detect_file, batch,
                                                                         shared):
    predictor = Predictor(detect_file, device="cpu", threads=2, lanes=2,
                          options=RuntimeOptions(shared_session=shared, io_binding=not shared))
    expected = predictor.run(batch)["boxes"]
    got = {}

    def lane(i: int) -> None:
        got[i] = np.asarray(predictor.run_lane(batch)["boxes"])

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert predictor._lane_sessions.built == (1 if shared else 2)
    for boxes in got.values():
        np.testing.assert_allclose(boxes, expected, atol=1e-4)


def test_tensorrt_options_cache_engines_beside_the_model_and_leave_other_nodes_to_cuda(tmp_path):
    model = tmp_path / "m.onnx"
    options = provider_options(TENSORRT, str(model), (64, 64, 3), 32, 1,
                               RuntimeOptions(trt_fp16=True))
    assert options["device_id"] == "1" and options["trt_fp16_enable"] == "True"
    assert options["trt_engine_cache_path"] == str(engine_cache_dir(model)) == str(tmp_path / "m.trt")
    assert options["trt_timing_cache_enable"] == "True" and (tmp_path / "m.trt").is_dir()
    assert options["trt_profile_max_shapes"] == "images:32x64x64x3"
    no_cache = provider_options(TENSORRT, str(model), (64, 64, 3), 8, 0,
                                RuntimeOptions(trt_cache=False))
    assert "trt_engine_cache_enable" not in no_cache and no_cache["trt_fp16_enable"] == "False"
    assert [p if isinstance(p, str) else p[0] for p in provider_chain(TENSORRT, options)] == [
        TENSORRT, CUDA, CPU]
    assert provider_chain(CUDA, {"device_id": "0"}) == [(CUDA, {"device_id": "0"}), CPU]
    assert provider_options(CUDA, str(model), (64, 64, 3), 8, 2) == {"device_id": "2"}


def test_tensorrt_cache_goes_to_the_temporary_folder_when_the_models_folder_is_read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        cache = trt_cache_dir(str(folder / "m.onnx"))
        if os.access(folder, os.W_OK):  # root ignores the mode bits
            assert cache == folder / "m.trt"
        else:
            assert cache.is_dir() and folder not in cache.parents
    finally:
        folder.chmod(0o755)
    assert trt_cache_dir(b"bytes of a model").is_dir()


def test_tensorrt_can_be_left_out_and_no_pinned_memory_exists_without_a_gpu():
    from vision_tasks.export.runtime.providers import cuda_device_count

    if cuda_device_count():
        pytest.skip("a GPU is visible here")
    assert _gpu_candidates([TENSORRT, CUDA, CPU], tensorrt=False) == ([], "no CUDA GPU visible")
    assert _gpu_candidates([CPU])[0] == []
    assert pinned_buffer((2, 8, 8, 3), 0) is None


def test_runtime_options_label_names_what_differs_from_the_defaults():
    assert RuntimeOptions().label() == "defaults"
    assert RuntimeOptions(io_binding=True, shared_session=False).label() == (
        "io binding, no shared session")


def test_the_fast_path_keeps_torch_out_of_the_runtime(detect_file):
    assert_runs_without_torch(f"""
import numpy as np
from vision_tasks.export.runtime import Predictor
from vision_tasks.export.runtime.fast_path import RuntimeOptions
p = Predictor({str(detect_file)!r}, device="cpu", lanes=1,
              options=RuntimeOptions(io_binding=True, shared_session=False))
assert p.predict_one(np.zeros((48, 80, 3), np.uint8)).task == "detect"
""")
