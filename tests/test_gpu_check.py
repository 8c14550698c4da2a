"""``benchmarks/gpu_check.py --smoke``: the GPU check's CPU mode runs every section end to
end (its own tiny model: data, train, export fp32 + fp16, val per runtime, model-only
speed, the JPEG pipeline, the training step variants), says "skipped: no GPU" for what
needs one, and appends one markdown section and one JSON run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vision_tasks.export.runtime.providers import cuda_device_count

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[str, list[dict]]:
    """The markdown and JSON a smoke run appended (to files that held one earlier run)."""
    out = tmp_path_factory.mktemp("gpu-check")
    report = out / "RESULTS-gpu.md"
    report.write_text("# GPU check results\n\n## an earlier run\n")
    (out / "RESULTS-gpu.json").write_text(json.dumps([{"mode": "earlier"}]))
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--work", str(out / "work"),
                           "--report", str(report), "--images", str(out / "no-such-folder"),
                           "--threads", "1"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    return report.read_text(), json.loads((out / "RESULTS-gpu.json").read_text())


def test_smoke_appends_one_section_and_one_json_run(smoke):
    markdown, runs = smoke
    assert markdown.startswith("# GPU check results\n\n## an earlier run\n")
    assert markdown.count("\n## ") == 2 and "(SMOKE mode, no GPU)" in markdown
    assert [r["mode"] for r in runs] == ["earlier", "smoke"]
    assert runs[1]["environment"]["onnxruntime"] and runs[1]["errors"] == []


def test_smoke_measures_every_cpu_path_and_skips_only_what_needs_a_gpu(smoke):
    if cuda_device_count():
        pytest.skip("a GPU is visible: --smoke still runs on the CPU, but the check is for CI")
    run = smoke[1][1]
    accuracy = run["accuracy"]["rows"]
    cpu = [r for r in accuracy if r["runtime"] == "cpu"]
    assert {r["precision"] for r in cpu} == {"fp32", "fp16"}
    assert all(r["status"] == "measured" and r["ok"] for r in cpu)
    assert all(r["status"] == "skipped: no GPU" for r in accuracy if r["runtime"] != "cpu")
    speed = {(r["runtime"], r["batch"]): r for r in run["speed"]}
    for name in ("torch_fp32", "torch_amp", "ort_fp32", "ort_fp32_iobind", "ort_fp16",
                 "ort_fp16_iobind"):
        assert speed[(name, 4)]["images_per_s"] > 0
    assert speed[("trt_fp16", 4)]["status"] == "skipped: no GPU"
    pipeline = run["pipeline"]
    assert pipeline["images_source"] == "synthetic JPEGs"
    assert pipeline["measurements"]["pipeline"]["images_per_s"] > 0
    variants = {(r["amp"], r["channels_last"]) for r in run["training"]["rows"]}
    assert variants == {("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)}
    assert run["training"]["gpu"] == "skipped: no GPU"
    assert "skipped: no GPU" in smoke[0]
