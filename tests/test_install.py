"""What ``pip install`` gives: the wheel, the torch-free base install, the packaged configs.

- The wheel holds one import name, ``vision_tasks`` (``vision_tasks.tasks``,
  ``vision_tasks.export``, the ready configs as ``vision_tasks/configs/*.yaml``), and puts
  torch and the other training packages in the ``train`` extra only.
- The base install (``pip install vision-tasks``) is built here once per run, in a fresh venv,
  from that wheel with ``-c constraints.txt`` and this machine's pip configuration (as
  scripts/setup.sh gets packages): no torch, no top-level ``tasks``/``export``; its
  ``vision-tasks predict`` writes the same predictions as the full install's, and a verb that
  needs the training extra says so in one line (exit status 2).
- A ready config is found by name (``vision-tasks train segment``, ``summary lenet5``).

The full install (``.[train,dev]``, scripts/setup.sh) is the venv that runs this suite: every
other test file covers its verbs.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from testkit import coco_split

from vision_tasks import configs
from vision_tasks.cli import main
from vision_tasks.cli_errors import RAY_EXTRA, TRAIN_EXTRA
from vision_tasks.errors import ConfigError

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPO = Path(__file__).resolve().parents[1]
INSTALL_TIMEOUT = 900  # s: the first run on a machine may download onnxruntime and opencv
RUN_TIMEOUT = 120  # s: any other command
EXTRA_LINE = ("error: vision-tasks {verb} needs the training extra (torch is not installed): "
              "pip install 'vision-tasks[train]'")
TINY_SEGMENT = [  # the ready segment config, shrunk to a few thousand weights at 64 px
    "data.image_size=64", "data.workers=0", "train.epochs=1", "train.batch_size=8",
    "train.warmup_epochs=0", "model.head.channels=16", "model.head.hidden=16",
    "model.head.depth=1", "model.head.num_protos=8", "model.head.proto_channels=16",
    "model.head.coef_hidden=16",
    "model.backbone.stages=" + json.dumps([[{"type": "conv", "filters": 8, "f": 3, "s": 2, "p": 1}]] * 5),
]


def _env() -> dict[str, str]:
    """The environment of a command in another venv: nothing of this one leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _run(cmd: list[str | Path], cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _copy_source(dest: Path) -> Path:
    """The files a build reads: root files and top-level packages (folders with an
    ``__init__.py``). A build writes build/ and *.egg-info into its source folder; a copy keeps
    the checkout clean and parallel runs apart."""
    dest.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.onnx", "*.pt")
    for entry in REPO.iterdir():
        if entry.is_file() and entry.suffix in (".py", ".toml", ".md", ".txt", ".cfg", ".in"):
            shutil.copy2(entry, dest / entry.name)
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            shutil.copytree(entry, dest / entry.name, ignore=skip)
    return dest


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout (built with this venv's setuptools, offline)."""
    root = tmp_path_factory.mktemp("wheel")
    source = _copy_source(root / "src")
    _ok(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
              "--wheel-dir", root / "dist", source], cwd=root, timeout=INSTALL_TIMEOUT))
    (built,) = (root / "dist").glob("vision_tasks-*.whl")
    return built


@pytest.fixture(scope="session")
def base_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the base install only (no extras), non-editable; its bin/ folder.

    Built without pip of its own and without byte-compiling: this venv's pip installs into it
    (``pip --python``), from the same package index and cache as scripts/setup.sh."""
    root = tmp_path_factory.mktemp("base-venv")
    venv = root / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root))
    _ok(_run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
              "--quiet", "--no-compile", "--disable-pip-version-check",
              "-c", REPO / "constraints.txt", wheel], cwd=root, timeout=INSTALL_TIMEOUT))
    return venv / "bin"


@pytest.fixture(scope="module")
def segment_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny segment model trained through ``vision-tasks train segment`` (the ready config
    by name), exported; and its val images."""
    from vision_tasks.export.onnx_export import export_checkpoint

    root = tmp_path_factory.mktemp("segment-by-name")
    data, run = root / "data", root / "run"
    assert main(["data", "synth", "segment", str(data), "--train", "8", "--val", "4",
                 "--size", "64"]) == 0
    sets = [f"data.train={coco_split(data, 'train')}", f"data.val={coco_split(data, 'val')}"]
    argv = ["train", "segment", "--out", str(run), "--quiet"]
    assert main([*argv, *(a for s in [*sets, *TINY_SEGMENT] for a in ("--set", s))]) == 0
    saved = (run / "config.yaml").read_text()
    assert "task: segment" in saved and "coef_hidden: 16" in saved
    assert "iou_threshold: 0.6" in saved  # a value only configs/segment.yaml sets
    model = export_checkpoint(run / "weights" / "best.pt", root / "segment.onnx").path
    return model, data / "val" / "images"


@pytest.fixture(scope="module")
def classify_onnx(tiny_classify_run, tiny_classify_data, tmp_path_factory) -> tuple[Path, Path]:
    from vision_tasks.export.onnx_export import export_checkpoint

    model = tmp_path_factory.mktemp("classify-onnx") / "classify.onnx"
    return export_checkpoint(tiny_classify_run.best, model).path, tiny_classify_data / "val"


def test_the_wheel_ships_one_import_name_the_configs_and_torch_only_in_the_train_extra(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for config in sorted((REPO / "configs").glob("*.yaml")):
        assert f"vision_tasks/configs/{config.name}" in names, config.name
    assert "vision_tasks/configs/__init__.py" in names
    assert "vision_tasks/export/runtime/__init__.py" in names
    assert any(n.startswith("vision_tasks/tasks/") and n.endswith(".py") for n in names)
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"vision_tasks"}, tops
    requires = _requires(wheel)
    torch = [r for r in requires if _distribution(r) == "torch"]
    assert torch and all('extra == "train"' in r for r in torch), torch
    base = {_distribution(r) for r in requires if "extra ==" not in r}
    assert {"numpy", "pillow", "opencv-python-headless", "orjson", "tqdm", "pycocotools"} <= base
    assert base & {"onnxruntime", "onnxruntime-gpu"}
    assert not base & {"torch", "torchvision", "pyyaml", "albumentations", "matplotlib", "onnx"}


def test_the_base_install_has_no_torch_and_only_the_vision_tasks_import_name(base_venv: Path,
                                                                            tmp_path: Path):
    check = """
import importlib, json
out = {}
for name in ("torch", "torchvision", "yaml", "tasks", "export", "vision_tasks.export.runtime",
             "vision_tasks.configs"):
    try:
        importlib.import_module(name)
        out[name] = "ok"
    except ModuleNotFoundError as err:
        out[name] = f"missing {err.name}"
from vision_tasks.export.runtime import Predictor
import vision_tasks.configs as configs
out["configs"] = configs.names()
print(json.dumps(out))
"""
    result = json.loads(_ok(_run([base_venv / "python", "-c", check], cwd=tmp_path)).stdout)
    for name in ("torch", "torchvision", "yaml", "tasks", "export"):
        assert result[name] == f"missing {name}", result
    assert result["vision_tasks.export.runtime"] == result["vision_tasks.configs"] == "ok"
    assert result["configs"] == configs.names()
    shown = _run([sys.executable, "-m", "pip", "--python", base_venv / "python", "show", "torch"],
                 cwd=tmp_path)
    assert shown.returncode != 0 and "not found" in shown.stderr.lower()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_the_base_install_predicts_what_the_full_install_predicts(
        task, base_venv, classify_onnx, segment_onnx, tmp_path, capsys):
    model, images = classify_onnx if task == "classify" else segment_onnx
    options = ["--quiet", "--device", "cpu", "--batch-size", "4", "--score-threshold", "0"]
    assert main(["predict", str(model), str(images), "--out", str(tmp_path / "full"), *options]) == 0
    _ok(_run([base_venv / "vision-tasks", "predict", model, images, "--out", tmp_path / "base",
              *options, "--save-images"], cwd=tmp_path))
    full, base = _records(tmp_path / "full" / "predictions.jsonl"), _records(tmp_path / "base" / "predictions.jsonl")
    assert len(full) == len(list(images.rglob("*.png"))) and all(r["task"] == task for r in full)
    assert _same(full, base)
    if task == "segment":  # masks as COCO RLE, through pycocotools of the base install
        detections = [d for r in base for d in r["detections"]]
        assert detections and all(isinstance(d["mask"]["counts"], str) for d in detections)
        assert (tmp_path / "base" / "coco_results.json").is_file()
    drawings = [p for p in (tmp_path / "base" / "images").rglob("*") if p.is_file()]
    assert len(drawings) == len(base)
    capsys.readouterr()


def test_the_base_install_benchmarks_an_onnx_file(base_venv, classify_onnx, tmp_path):
    model, images = classify_onnx
    done = _ok(_run([base_venv / "vision-tasks", "benchmark", model, "--images", images, "--json",
                     "--pipeline-images", "16", "--repeats", "1", "--seconds", "0.05",
                     "--threads", "1", "--batch-size", "4"], cwd=tmp_path))
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report["ratios"]["onnxruntime_over_pytorch"] is None
    assert report["ratios"]["pipeline_over_model_only"] > 0


@pytest.mark.parametrize("argv", [["train", "detect", "--out", "run"], ["summary", "lenet5"],
                                  ["data", "synth", "classify", "out"],
                                  ["export", "best.pt", "--out", "m.onnx"]],
                         ids=lambda argv: " ".join(argv[:2]))
def test_a_verb_that_needs_the_train_extra_says_so_in_one_line_without_it(argv, base_venv, tmp_path):
    done = _run([base_venv / "vision-tasks", *argv], cwd=tmp_path)
    verb = "data synth" if argv[0] == "data" else argv[0]
    assert (done.returncode, done.stdout, done.stderr) == (2, "", EXTRA_LINE.format(verb=verb) + "\n")


def test_predict_on_ray_without_the_ray_extra_says_so_in_one_line(base_venv, classify_onnx,
                                                                   tmp_path):
    model, images = classify_onnx
    done = _run([base_venv / "vision-tasks", "predict", model, images, "--out", tmp_path / "out",
                 "--engine", "ray"], cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (
        2, "", "error: vision-tasks predict --engine ray needs the ray extra (ray is not "
               "installed): pip install 'vision-tasks[ray]'\n")


def _requires(wheel: Path) -> list[str]:
    """The wheel's ``Requires-Dist`` lines."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in metadata.splitlines()
            if line.startswith("Requires-Dist:")]


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~;\s\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_cli_knows_every_distribution_of_the_train_extra(wheel: Path):
    extra = {_distribution(r) for r in _requires(wheel) if 'extra == "train"' in r}
    assert "torch" in extra
    assert extra <= set(TRAIN_EXTRA.values()), extra - set(TRAIN_EXTRA.values())


def test_the_cli_knows_every_distribution_of_the_ray_extra(wheel: Path):
    extra = {_distribution(r) for r in _requires(wheel) if 'extra == "ray"' in r}
    assert extra == {"ray"} and extra <= set(RAY_EXTRA.values())


def test_a_ready_config_is_found_by_name_with_or_without_yaml(tmp_path: Path, monkeypatch):
    assert configs.names() == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
    for name in configs.names():
        assert configs.path(name) == configs.path(f"{name}.yaml")
        assert configs.path(name).read_text() == (REPO / "configs" / f"{name}.yaml").read_text()
    monkeypatch.chdir(tmp_path)  # an existing file comes first, even one named like a config
    (tmp_path / "detect.yaml").write_text("task: classify\n")
    assert configs.resolve("detect.yaml") == Path("detect.yaml")
    assert configs.resolve("detect") == configs.path("detect")


def test_an_unknown_config_name_lists_the_ready_configs_and_the_nearest(tmp_path: Path, capsys):
    with pytest.raises(ConfigError, match=r"did you mean 'detect'\?"):
        configs.path("detct")
    assert main(["train", "detct", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: detct: no such config file")
    assert "(did you mean 'detect'?)" in err and ", ".join(configs.names()) in err
    assert not (tmp_path / "run").exists()


def test_summary_takes_a_ready_configs_name(capsys):
    assert main(["summary", "lenet5"]) == 0
    assert "Total learnable parameters: 62,006" in capsys.readouterr().out
