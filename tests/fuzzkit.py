"""Helpers of the bad-input tables (``test_fuzz_verbs*.py``): a tree hash, a folder of bad
files of every kind, and the run-and-check of one command line.

The rule each case checks (issue 28): a bad input ends with exit status 2, at most two
lines on stderr that are not progress lines, one of them ``error: ...`` naming the
offending file or option, no traceback, and no file outside the run's ``--out`` changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

OLD = Path(__file__).parent / "fixtures" / "v0_1_models"

# Lines a command may print on stderr besides its error: progress bars and headers.
PROGRESS_PREFIXES = ("predict: ", "train: ", "serve: listening", "[")


def tree_hash(root: Path, exclude: tuple[Path, ...] = ()) -> dict[str, str]:
    """``{relative path: SHA-256}`` of every file under ``root`` (links by their target text,
    folders by an empty marker so a new empty folder counts too), leaving out the trees at
    ``exclude``."""
    skip = {os.path.abspath(p) for p in exclude}
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.abspath(os.path.join(folder, d)) not in skip]
        rel = os.path.relpath(folder, root)
        found[rel + "/"] = ""
        for name in files:
            path = os.path.join(folder, name)
            if os.path.abspath(path) in skip:
                continue
            if os.path.islink(path):
                found[os.path.join(rel, name)] = "link:" + os.readlink(path)
                continue
            with open(path, "rb") as f:
                found[os.path.join(rel, name)] = hashlib.sha256(f.read()).hexdigest()
    return found


def check_failure(code: int, err: str, names: str, expected_code: int = 2) -> str:
    """Assert the rule on one failed run; returns its error line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith(PROGRESS_PREFIXES)
             and "it/s]" not in line and "s/it]" not in line]
    assert code == expected_code, (code, err)
    assert len(lines) <= 2, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert names in errors[0], (names, errors[0])
    return errors[0]


def make_bad_files(root: Path) -> dict[str, Path]:
    """A folder of inputs, good and bad, named by role (``{name}`` in the case tables)."""
    root.mkdir(parents=True, exist_ok=True)
    p: dict[str, Path] = {}
    for task in ("classify", "detect", "segment", "localize", "multi"):
        for suffix in ("pt", "onnx"):
            p[f"{task}_{suffix}"] = Path(shutil.copy(OLD / f"{task}.{suffix}", root))
    p["png"] = Path(shutil.copy(OLD / "image0.png", root))
    p["missing"] = root / "missing.pt"
    p["missing_png"] = root / "missing.png"
    p["dir"] = root / "a-folder"
    p["dir"].mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(p["dir"] / "inside.png")
    p["empty_dir"] = root / "empty-folder"
    p["empty_dir"].mkdir()
    checkpoint = p["classify_pt"].read_bytes()
    for name, last in (("truncated_run", checkpoint[:5000]), ("stateless_run", checkpoint)):
        p[name] = root / name  # a run folder whose last.pt cannot be resumed from
        (p[name] / "weights").mkdir(parents=True)
        (p[name] / "weights" / "last.pt").write_bytes(last)
    p["list_record"] = root / "list-record"  # a predict OUT whose run.json is a list
    p["list_record"].mkdir()
    (p["list_record"] / "run.json").write_text("[1, 2]\n")
    (p["list_record"] / "predictions.jsonl").write_text("")
    p["empty"] = root / "empty.pt"
    p["empty"].write_bytes(b"")
    p["empty_onnx"] = root / "empty.onnx"
    p["empty_onnx"].write_bytes(b"")
    p["empty_png"] = root / "empty.png"
    p["empty_png"].write_bytes(b"")
    p["empty_yaml"] = root / "empty.yaml"
    p["empty_yaml"].write_text("")
    data = p["classify_pt"].read_bytes()
    p["truncated_pt"] = root / "truncated.pt"
    p["truncated_pt"].write_bytes(data[: len(data) // 2])
    data = p["classify_onnx"].read_bytes()
    p["truncated_onnx"] = root / "truncated.onnx"
    p["truncated_onnx"].write_bytes(data[: len(data) // 2])
    p["truncated_png"] = root / "truncated.png"
    p["truncated_png"].write_bytes(p["png"].read_bytes()[:200])
    p["png_as_pt"] = Path(shutil.copy(p["png"], root / "image.pt"))
    p["png_as_onnx"] = Path(shutil.copy(p["png"], root / "image.onnx"))
    p["pt_as_onnx"] = Path(shutil.copy(p["classify_pt"], root / "checkpoint.onnx"))
    p["onnx_as_pt"] = Path(shutil.copy(p["classify_onnx"], root / "model.pt"))
    p["text_pt"] = root / "notes.pt"
    p["text_pt"].write_text("these are not weights\n")
    p["file"] = root / "a-file.txt"
    p["file"].write_text("a file where a folder is expected\n")
    yamls = {
        "bad_yaml": "task: classify\nmodel: {backbone: [unclosed\n",
        "list_yaml": "- task\n- classify\n",
        "scalar_yaml": "classify\n",
        "typo_yaml": "task: classify\ntrian:\n  epochs: 1\n",
        "string_number_yaml": "task: classify\ntrain:\n  epochs: three\n",
        "negative_yaml": "task: classify\ndata:\n  image_size: -32\n",
        "absurd_yaml": "task: classify\ndata:\n  image_size: 100000\n",
        "unknown_task_yaml": "task: clasify\n",
        "list_section_yaml": "task: classify\ntrain: [1, 2]\n",
        "missing_base_yaml": "base: nowhere\n",
    }
    for name, text in yamls.items():
        p[name] = root / f"{name.removesuffix('_yaml')}.yaml"
        p[name].write_text(text)
    p["binary_yaml"] = root / "binary.yaml"
    p["binary_yaml"].write_bytes(b"task: \xff\xfe\x00classify\n")
    from vision_tasks.task_api import get_task

    p["shapes"] = root / "shapes"  # ImageFolder: train 4, val 2 images, 32 px
    get_task("classify").synthesize(p["shapes"], 4, 2, 32, seed=0)
    p["coco"] = root / "coco"  # COCO splits: train 2, val 2 images, 32 px
    get_task("detect").synthesize(p["coco"], 2, 2, 32, seed=0)
    return p


def make_coco_splits(root: Path, annotations: object) -> Path:
    """A folder of COCO splits (train/ and val/, one image each) whose annotations.json holds
    ``annotations`` (any JSON value, or a ``bytes`` text written as it is)."""
    for split in ("train", "val"):
        images = root / split / "images"
        images.mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
        text = annotations if isinstance(annotations, bytes) else json.dumps(annotations).encode()
        (root / split / "annotations.json").write_bytes(text)
    return root
