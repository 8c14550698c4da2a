"""`vision-tasks predict`: sources, bad files listed and skipped, resume, drawings."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from vision_tasks.export.onnx_export import export_checkpoint
from vision_tasks.export.runtime.batch import read_done
from vision_tasks.export.runtime.sources import SourceError, resolve_sources

from vision_tasks.cli import main


@pytest.fixture(scope="module")
def model_path(tiny_classify_run, tmp_path_factory) -> Path:
    return export_checkpoint(tiny_classify_run.best, tmp_path_factory.mktemp("pr") / "m.onnx").path


def _jpeg(width: int = 40, height: int = 30) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """2 good images (grayscale PNG, RGBA PNG, in a subfolder) and 3 bad ones."""
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.new("L", (48, 20), 90).save(root / "gray.png")
    Image.new("RGBA", (20, 44), (200, 30, 30, 0)).save(root / "sub" / "rgba.png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(_jpeg()[:300])
    (root / "text.jpg").write_text("this is not a JPEG\n")
    (root / "notes.txt").write_text("not an image suffix: ignored by the folder scan\n")
    return root


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _predict(model: Path, source: Path | str, out: Path, *extra: str) -> int:
    return main(["predict", str(model), str(source), "--out", str(out), "--quiet",
                 "--batch-size", "2", *extra])


def test_folder_with_bad_files_gives_two_predictions_three_errors_and_exit_0(
        model_path, mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(model_path, mixed_folder, out) == 0
    predictions, errors = _lines(out / "predictions.jsonl"), _lines(out / "errors.jsonl")
    assert sorted(Path(p["source"]).name for p in predictions) == ["gray.png", "rgba.png"]
    assert {(p["width"], p["height"]) for p in predictions} == {(48, 20), (20, 44)}
    reasons = {Path(e["source"]).name: e["error"] for e in errors}
    assert set(reasons) == {"empty.jpg", "truncated.jpg", "text.jpg"}
    assert "empty file" in reasons["empty.jpg"]
    assert "not a recognised image" in reasons["text.jpg"]
    assert all("\n" not in r and str(mixed_folder) in r for r in reasons.values())
    summary = capsys.readouterr().out
    assert "predicted 2 images, 3 errors" in summary and "errors.jsonl" in summary


def test_resume_skips_images_already_done_and_repairs_a_torn_last_line(
        model_path, mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(model_path, mixed_folder, out) == 0
    with open(out / "predictions.jsonl", "a") as f:
        f.write('{"source": "half a li')  # a run killed while writing
    Image.new("RGB", (30, 30), (0, 0, 255)).save(mixed_folder / "new.png")
    capsys.readouterr()
    assert _predict(model_path, mixed_folder, out, "--resume") == 0
    predictions = _lines(out / "predictions.jsonl")
    assert sorted(Path(p["source"]).name for p in predictions) == ["gray.png", "new.png", "rgba.png"]
    assert len(_lines(out / "errors.jsonl")) == 3
    assert "predicted 1 image, 0 errors, 5 skipped" in capsys.readouterr().out


def test_an_out_folder_with_results_needs_resume_or_overwrite(model_path, mixed_folder, tmp_path,
                                                               capsys):
    out = tmp_path / "out"
    assert _predict(model_path, mixed_folder, out) == 0
    assert _predict(model_path, mixed_folder, out) == 2
    assert "predictions.jsonl already exists; pass --resume" in capsys.readouterr().err
    assert _predict(model_path, mixed_folder, out, "--overwrite") == 0
    assert len(_lines(out / "predictions.jsonl")) == 2


def test_save_images_draws_each_prediction_keeping_the_folder_layout(model_path, mixed_folder,
                                                                     tmp_path):
    out = tmp_path / "out"
    assert _predict(model_path, mixed_folder, out, "--save-images") == 0
    drawings = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*.*"))
    assert drawings == ["gray.png", "sub/rgba.png"]
    drawn = cv2.imread(str(out / "images" / "gray.png"))
    assert drawn.shape[1] / drawn.shape[0] == pytest.approx(48 / 20)  # enlarged, same aspect


def test_sources_can_be_one_file_a_glob_or_a_list_with_missing_entries(model_path, mixed_folder,
                                                                       tmp_path):
    assert resolve_sources(str(mixed_folder / "gray.png")) == [str(mixed_folder / "gray.png")]
    assert [Path(p).name for p in resolve_sources(str(mixed_folder / "**" / "*.png"))] == [
        "gray.png", "rgba.png"]
    listing = mixed_folder / "list.txt"
    listing.write_text("# two images\ngray.png\n\nsub/rgba.png\nmissing.png\n")
    assert [Path(p).name for p in resolve_sources(str(listing))] == ["gray.png", "rgba.png",
                                                                     "missing.png"]
    out = tmp_path / "out"
    assert _predict(model_path, listing, out) == 0
    (error,) = _lines(out / "errors.jsonl")
    assert error["source"].endswith("missing.png") and "file not found" in error["error"]


def test_a_source_that_names_nothing_is_a_one_line_error(model_path, tmp_path, capsys):
    with pytest.raises(SourceError, match="no such file or folder"):
        resolve_sources(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    assert _predict(model_path, tmp_path / "empty", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "has no image files" in err and "\n" not in err


def test_read_done_ignores_damaged_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"source": "a.png"}\nnot json\n{"source": "b.png"}\n{"sou')
    assert read_done(path) == {"a.png", "b.png"}
    assert path.read_text().endswith('"b.png"}\n')


def _scene_folder(root: Path) -> Path:
    """Three large synthetic-shape JPEGs, one stored sideways with EXIF orientation 6."""
    from vision_tasks.data.synth import render_scene

    root.mkdir(parents=True)
    for i in range(3):
        image, _ = render_scene(np.random.default_rng(i), 512, 2)
        img = Image.fromarray(np.ascontiguousarray(image[:, :400] if i == 2 else image))
        exif = img.getexif()
        exif[0x0112] = 6 if i == 2 else 1
        img.save(root / f"scene{i}.jpg", quality=95, exif=exif.tobytes())
    return root


def test_reduced_decode_gives_close_scores_and_the_same_geometry(model_path, tmp_path):
    folder = _scene_folder(tmp_path / "scenes")
    full, reduced = tmp_path / "full", tmp_path / "reduced"
    assert _predict(model_path, folder, full) == 0
    assert _predict(model_path, folder, reduced, "--reduced-decode") == 0
    a, b = _lines(full / "predictions.jsonl"), _lines(reduced / "predictions.jsonl")
    assert [p["source"] for p in a] == [p["source"] for p in b]
    assert [(p["width"], p["height"]) for p in b] == [(512, 512), (512, 512), (512, 400)]
    for pa, pb in zip(a, b, strict=True):
        scores_a = {c["name"]: c["score"] for c in pa["top"]}
        scores_b = {c["name"]: c["score"] for c in pb["top"]}
        assert scores_a.keys() == scores_b.keys()
        assert max(abs(scores_a[k] - scores_b[k]) for k in scores_a) <= 0.05


def test_save_images_does_not_change_the_model_input(model_path, tmp_path):
    from vision_tasks.export.runtime import Predictor
    from vision_tasks.export.runtime.pipeline import make_preparer

    folder = _scene_folder(tmp_path / "scenes")
    full_predictor = Predictor(model_path, device="cpu")
    for reduced in (False, True):
        predictor = Predictor(model_path, device="cpu", reduced_decode=reduced)
        plain, drawing = make_preparer(predictor), make_preparer(predictor, keep_original=True)
        for path in sorted(folder.iterdir()):
            a, b = plain(str(path)), drawing(str(path))
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.image, predictor.prepare(path)[0])
            assert a.letterbox == b.letterbox and a.original is None
            assert b.original.shape[:2] == (b.letterbox.height, b.letterbox.width)
            # reduced or not, the letterbox is the full image's (boxes map back the same)
            assert a.letterbox == Predictor.prepare(full_predictor, path)[1]
