"""Bad inputs to ``predict`` and ``benchmark`` (issue 18): odd files, odd folders, odd names,
a full disk, another model in the same OUT. Each gives one line and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import threading
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime.batch import run_predict
from vision_tasks.export.runtime.predictor import Predictor
from vision_tasks.export.runtime.sources import resolve_sources

from vision_tasks import imaging
from vision_tasks.cli import main
from vision_tasks.contract import ModelFileError
from vision_tasks.imaging import ImageError, load_image


@pytest.fixture(scope="module")
def model_path(tiny_classify_run, tmp_path_factory) -> Path:
    return export_checkpoint(tiny_classify_run.best, tmp_path_factory.mktemp("bs") / "m.onnx").path


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two good images, one in a subfolder."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "a.png")
    Image.new("RGB", (30, 40), (30, 200, 30)).save(root / "sub" / "b.png")
    return root


def _predict(model: Path, source: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(model), str(source), "--out", str(out), "--quiet",
                 "--batch-size", "2", *extra])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _error_line(capsys) -> str:
    """The one error line on stderr (after predict's header line, if any)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("predict: ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_resume_with_another_model_or_threshold_is_refused_naming_what_differs(
        model_path, folder, tmp_path, capsys):
    other = tmp_path / "other.onnx"
    proto = onnx.load(str(model_path))
    proto.doc_string += " (a retrained copy)"
    onnx.save(proto, str(other))
    out = tmp_path / "out"
    assert _predict(model_path, folder, out) == 0
    capsys.readouterr()
    assert _predict(other, folder, out, "--resume") == 2
    line = _error_line(capsys)
    assert "the model file (another SHA-256)" in line and "--overwrite" in line
    assert _predict(model_path, folder, out, "--resume", "--score-threshold", "0.5") == 2
    assert "score_threshold (0.25 -> 0.5)" in _error_line(capsys)
    assert len(_lines(out / "predictions.jsonl")) == 2  # nothing appended by the refused runs
    assert _predict(model_path, folder, out, "--resume") == 0  # the same model continues


def test_a_folder_link_loop_is_walked_once_and_reported(model_path, folder, tmp_path, capsys):
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    assert sorted(Path(p).name for p in resolve_sources(str(folder))) == ["a.png", "b.png"]
    from vision_tasks.export.runtime.sources import find_sources

    found = find_sources(str(folder))
    assert sorted(Path(p).name for p in found.files) == ["a.png", "b.png"]
    (note,) = found.skipped
    assert note == f"{folder / 'sub' / 'loop'} is {folder} again (a link loop or a second link to it); walked once"
    assert _predict(model_path, folder, tmp_path / "out") == 0
    assert "predict: skipped" in capsys.readouterr().err
    assert len(_lines(tmp_path / "out" / "predictions.jsonl")) == 2


def test_a_file_name_that_is_not_utf8_is_predicted_and_resume_knows_it(model_path, folder,
                                                                        tmp_path, capsys):
    latin1 = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    try:
        Image.new("RGB", (20, 20), (0, 0, 200)).save(os.fsdecode(latin1))
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    out = tmp_path / "out"
    assert _predict(model_path, folder, out) == 0
    sources = sorted(p["source"] for p in _lines(out / "predictions.jsonl"))
    assert len(sources) == 3 and any(s.endswith("/caf\\xe9.png") for s in sources)
    capsys.readouterr()
    assert _predict(model_path, folder, out, "--resume") == 0
    assert "predicted 0 images, 0 errors, 3 skipped" in capsys.readouterr().out


def _finishes(target, *args, seconds: float = 20.0, unblock: Path | None = None):
    """Run ``target(*args)`` in a thread; its result, or a failure when it is still running
    after ``seconds`` (a FIFO it waits on is then opened for writing, to let it go)."""
    result: list = []

    def run() -> None:
        try:
            result.append(target(*args))
        except BaseException as err:  # re-raised in the test's thread
            result.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            with open(unblock, "wb"):
                pass
        pytest.fail(f"{target.__name__} still waits after {seconds} s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_a_fifo_named_jpg_is_an_error_not_a_hang(model_path, folder, tmp_path):
    fifo = folder / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match=r"pipe\.jpg: not a regular file but a FIFO"):
        _finishes(load_image, str(fifo), unblock=fifo)
    out = tmp_path / "out"
    assert _finishes(_predict, model_path, folder, out, unblock=fifo) == 0
    assert len(_lines(out / "predictions.jsonl")) == 2
    (error,) = _lines(out / "errors.jsonl")
    assert error["source"].endswith("pipe.jpg") and "not a regular file" in error["error"]


def test_a_link_to_dev_zero_and_a_file_over_the_byte_limit_are_errors(tmp_path, monkeypatch):
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match=r"zero\.jpg: not a regular file but a character device"):
        load_image(zero)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), np.uint8)).save(big)
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ImageError, match=r"big\.png: more than 1,000 bytes"):
        load_image(big)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_naming_the_file_and_resume_recovers(model_path, folder,
                                                                     tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").symlink_to("/dev/full")
    assert _predict(model_path, folder, out, "--resume") == 2
    line = _error_line(capsys)
    assert "predictions.jsonl: cannot write (No space left on device)" in line
    assert "--resume" in line
    (out / "predictions.jsonl").unlink()
    assert _predict(model_path, folder, out, "--resume") == 0
    assert len(_lines(out / "predictions.jsonl")) == 2


def test_out_that_is_a_file_is_one_line(model_path, folder, tmp_path, capsys):
    (tmp_path / "out").write_text("not a folder")
    assert _predict(model_path, folder, tmp_path / "out") == 2
    assert "out: is a file, not a folder" in _error_line(capsys)


def test_predict_exits_non_zero_when_every_image_failed(model_path, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("not an image")
    assert _predict(model_path, bad, tmp_path / "out") == 2
    assert "none of the 2 images of this run could be predicted" in capsys.readouterr().err
    assert len(_lines(tmp_path / "out" / "errors.jsonl")) == 2


def test_overwrite_discards_the_previous_drawings(model_path, folder, tmp_path):
    out = tmp_path / "out"
    assert _predict(model_path, folder, out, "--save-images") == 0
    (folder / "a.png").unlink()
    assert _predict(model_path, folder, out, "--save-images", "--overwrite") == 0
    drawn = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.*"))
    assert drawn == ["b.png"]


def test_a_large_image_warning_names_the_file(tmp_path, monkeypatch):
    from vision_tasks.imaging import LargeImageWarning

    path = tmp_path / "large.png"
    Image.new("RGB", (40, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: over, not twice over
    with pytest.warns(LargeImageWarning, match=r"large\.png: 40x30 pixels, more than"):
        load_image(path)


def test_save_images_memory_does_not_grow_with_the_images_in_flight(model_path, tmp_path):
    """Drawings decode their image again: the originals are not held for every batch in
    flight, so the peak stays a few images whatever the batch size and workers."""
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels = cv2.resize(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8),
                        (1600, 1200), interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(folder / "00.jpg"), pixels)
    for i in range(1, 24):
        shutil.copy(folder / "00.jpg", folder / f"{i:02d}.jpg")
    original = pixels.nbytes
    predictor = Predictor(model_path, device="cpu", batch_size=4, threads=1)
    peaks = {}
    for save in (False, True):
        tracemalloc.start()
        run_predict(predictor, resolve_sources(str(folder)), tmp_path / f"out{save}", workers=3,
                    save_images=save, progress=False)
        peaks[save] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[True] - peaks[False] < 8 * original, (peaks, original)


def test_benchmark_refuses_a_checkpoint_of_another_model(model_path, tmp_path):
    from vision_tasks.export.benchmark import run_benchmark

    from vision_tasks.config import load_config
    from vision_tasks.engine.checkpoint import save_checkpoint
    from vision_tasks.models.model import build_model
    from vision_tasks.task_api import get_task

    cfg = load_config(None, ["model.backbone.width=4", "model.backbone.depths=[1, 1, 1]",
                             "data.image_size=48"], base={"task": "localize"})
    model = build_model(cfg, get_task("localize"), 3)
    checkpoint = tmp_path / "localize.pt"
    save_checkpoint(checkpoint, {"task": "localize", "class_names": ["a", "b", "c"],
                                 "config": cfg.to_dict(), "model": model.state_dict()})
    with pytest.raises(ModelFileError, match=r"localize\.pt is not the model of .*m\.onnx \(task "
                                             r"localize vs classify; input size 48x48 vs 32x32; "
                                             r"3 vs 5 classes"):
        run_benchmark(model_path, checkpoint, batch_size=2, repeats=1, min_seconds=0.0,
                      pipeline_count=4, warmup=0)
