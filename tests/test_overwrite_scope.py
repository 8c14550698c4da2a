"""What --overwrite may delete and --resume may skip (issue 28, families 2 and 4): predict
--overwrite deletes only the drawings, videos and MOT files its run.json lists (a user's files
in OUT/images, OUT/videos, OUT/mot stay; an older folder without that list keeps everything and
says so); --resume deletes nothing; --resume --retry-errors predicts the sources of
errors.jsonl again, which leave it when they succeed and stay once when they fail again."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_segment_runtime import segment_model
from test_video import write_video

from vision_tasks.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return segment_model(tmp_path_factory.mktemp("ovr") / "seg.onnx",
                         np.array([[4, 4, 40, 40]], np.float32))


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((24, 32, 3), 90, np.uint8))
    return path


def _predict(model: Path, source: Path, out: Path, *extra: str) -> int:
    return main(["predict", str(model), str(source), "--out", str(out), "--quiet", *extra])


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _sources(path: Path) -> list[str]:
    return [Path(json.loads(line)["source"]).name for line in path.read_text().splitlines()]


def test_overwrite_deletes_the_earlier_drawings_only(model, tmp_path, capsys):
    src = tmp_path / "src"
    _image(src / "a.png"), _image(src / "sub" / "b.png"), _image(src / "deep" / "er" / "c.png")
    out = tmp_path / "out"
    assert _predict(model, src, out, "--save-images") == 0
    assert _files(out / "images") == ["a.png", "deep/er/c.png", "sub/b.png"]
    (out / "images" / "mine.jpg").write_bytes(b"the user's photo")
    (out / "images" / "sub" / "notes.txt").write_text("mine")
    (out / "images" / "empty").mkdir()
    assert _predict(model, src / "a.png", out, "--save-images", "--overwrite") == 0
    # b.png, c.png were the earlier run's: gone (c's folders with it); a.png drawn again;
    # the user's files stay
    assert _files(out / "images") == ["a.png", "mine.jpg", "sub/notes.txt"]
    assert not (out / "images" / "deep").exists()
    assert (out / "images" / "mine.jpg").read_bytes() == b"the user's photo"
    assert (out / "images" / "empty").is_dir()  # not made by a run of ours: left alone
    assert "no record of ours" not in capsys.readouterr().err
    # a third run without drawings: the second's drawing goes
    assert _predict(model, src / "sub" / "b.png", out, "--overwrite") == 0
    assert _files(out / "images") == ["mine.jpg", "sub/notes.txt"]


def test_overwrite_never_deletes_through_a_link_out_of_out(model, tmp_path):
    src = tmp_path / "src"
    _image(src / "a.png"), _image(src / "sub" / "b.png")
    out = tmp_path / "out"
    assert _predict(model, src, out, "--save-images") == 0
    elsewhere = _image(tmp_path / "elsewhere" / "b.png").parent  # the user's own b.png
    for drawn in (out / "images" / "sub").iterdir():
        drawn.unlink()
    (out / "images" / "sub").rmdir()
    (out / "images" / "sub").symlink_to(elsewhere, target_is_directory=True)
    assert _predict(model, src / "a.png", out, "--overwrite") == 0
    assert (elsewhere / "b.png").is_file() and not (out / "images" / "a.png").exists()


def test_overwrite_of_an_older_folder_keeps_its_files_and_says_so(model, tmp_path, capsys):
    src = _image(tmp_path / "a.png")
    out = tmp_path / "out"
    _image(out / "images" / "old.png")  # an older version's drawing, or the user's
    (out / "predictions.jsonl").write_text(json.dumps({"source": str(tmp_path / "old.png")}) + "\n")
    assert _predict(model, src, out, "--save-images", "--overwrite") == 0
    assert _files(out / "images") == ["a.png", "old.png"]
    notes = [line for line in capsys.readouterr().err.splitlines() if "no record of ours" in line]
    assert len(notes) == 1 and str(out / "images") in notes[0]


def test_resume_deletes_nothing_and_keeps_both_runs_listed(model, tmp_path):
    one, two = _image(tmp_path / "x" / "one.png"), _image(tmp_path / "y" / "two.png")
    out = tmp_path / "out"
    assert _predict(model, one, out, "--save-images") == 0
    (out / "images" / "mine.txt").write_text("mine")
    assert _predict(model, two, out, "--save-images", "--resume") == 0
    assert _files(out / "images") == ["mine.txt", "one.png", "two.png"]
    record = json.loads((out / "run.json").read_text())
    assert record["drawing_roots"] == [str(one.parent), str(two.parent)]
    assert _predict(model, one, out, "--overwrite") == 0  # both runs' drawings are known
    assert _files(out / "images") == ["mine.txt"]


def test_resume_draws_again_a_done_image_whose_drawing_is_missing(model, tmp_path):
    """A run killed after an image's line but before its drawing: --resume --save-images
    draws it (no second line), as it is found on disk."""
    src = tmp_path / "src"
    for name in ("a.png", "b.png", "c.png"):
        _image(src / name)
    out = tmp_path / "out"
    assert _predict(model, src, out, "--save-images") == 0
    lines = (out / "predictions.jsonl").read_text()
    (out / "images" / "b.png").unlink()
    assert _predict(model, src, out, "--save-images", "--resume") == 0
    assert _files(out / "images") == ["a.png", "b.png", "c.png"]
    assert (out / "predictions.jsonl").read_text() == lines


def test_video_overwrite_deletes_the_listed_videos_and_tracks_only(model, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.avi", 3)
    out = tmp_path / "out"
    assert _predict(model, clip, out, "--save-video", "--track") == 0
    assert _files(out / "videos") == ["clip.mp4"] and _files(out / "mot") == ["clip.txt"]
    (out / "videos" / "holiday.mp4").write_bytes(b"the user's film")
    (out / "mot" / "mine.txt").write_text("1,1,0,0,1,1,1,-1,-1,-1\n")
    assert _predict(model, clip, out, "--overwrite") == 0
    assert _files(out / "videos") == ["holiday.mp4"] and _files(out / "mot") == ["mine.txt"]
    assert (out / "videos" / "holiday.mp4").read_bytes() == b"the user's film"
    # a record without the list (an older version's): its video stays, and the run says so
    assert _predict(model, clip, out, "--save-video", "--overwrite") == 0
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({k: v for k, v in record.items()
                                              if k not in ("outputs", "drawing_roots")}))
    capsys.readouterr()
    assert _predict(model, clip, out, "--overwrite") == 0
    assert _files(out / "videos") == ["clip.mp4", "holiday.mp4"]
    assert "no record of ours" in capsys.readouterr().err


def test_retry_errors_moves_fixed_sources_out_of_errors_jsonl(model, tmp_path, capsys):
    src = tmp_path / "src"
    _image(src / "good.png")
    (src / "fixed.png").write_bytes(b"not yet an image")
    (src / "broken.png").write_bytes(b"never an image")
    out = tmp_path / "out"
    assert _predict(model, src, out) == 0
    assert sorted(_sources(out / "errors.jsonl")) == ["broken.png", "fixed.png"]
    _image(src / "fixed.png")  # the user repairs one file
    capsys.readouterr()
    assert _predict(model, src, out, "--resume") == 0  # without the flag: skipped, and said
    summary = capsys.readouterr().out
    assert "3 skipped" in summary and "2 of them failed before" in summary
    assert "--retry-errors" in summary
    for status in (0, 2):  # the second time only broken.png is tried (and fails), and stays once
        assert _predict(model, src, out, "--resume", "--retry-errors") == status
        assert _sources(out / "errors.jsonl") == ["broken.png"]
        assert sorted(_sources(out / "predictions.jsonl")) == ["fixed.png", "good.png"]


def test_retry_errors_needs_resume(model, tmp_path, capsys):
    assert _predict(model, _image(tmp_path / "a.png"), tmp_path / "out", "--retry-errors") == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert "--retry-errors" in line and "--resume" in line


def test_retry_errors_predicts_a_repaired_video(model, tmp_path, capsys):
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"not a video")
    out = tmp_path / "out"
    _predict(model, clip, out)
    assert _sources(out / "errors.jsonl") == ["clip.avi"]
    write_video(clip, 2)
    assert _predict(model, clip, out, "--resume") == 0
    assert "failed before: add --retry-errors" in capsys.readouterr().out
    assert _predict(model, clip, out, "--resume", "--retry-errors") == 0
    assert (out / "errors.jsonl").read_text() == ""
    assert _sources(out / "predictions.jsonl") == ["clip.avi", "clip.avi"]


# ------------------------------------------------------------------ train and val --out

def _tiny_train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "classify", "--out", str(out), "--quiet", *extra, "--set",
                 f"data.train={data / 'train'}", "--set", f"data.val={data / 'val'}",
                 *[arg for o in ("model.backbone.width=4", "model.backbone.depths=[1, 1]",
                                 "data.image_size=32", "data.workers=0", "train.epochs=1",
                                 "train.batch_size=16") for arg in ("--set", o)]])


def _error_line(capsys) -> str:
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    return line


def test_train_into_a_user_folder_replaces_its_names_only_with_overwrite(
        tiny_classify_data, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my: settings\n")
    (out / "notes.txt").write_text("mine")
    assert _tiny_train(tiny_classify_data, out) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {out / 'config.yaml'}: already exists") and "--overwrite" in line
    assert (out / "config.yaml").read_text() == "my: settings\n"
    assert _tiny_train(tiny_classify_data, out, "--overwrite") == 0
    assert "task: classify" in (out / "config.yaml").read_text()
    assert (out / "notes.txt").read_text() == "mine" and (out / "weights" / "best.pt").is_file()


def test_train_overwrite_over_a_run_drops_its_weights_and_events_only(
        tiny_classify_run, tiny_classify_data, tiny_config, tmp_path):
    import shutil

    from vision_tasks.engine.trainer import Trainer

    run = tmp_path / "run"
    shutil.copytree(tiny_classify_run.run_dir, run)
    (run / "notes.txt").write_text("mine")
    (run / "tensorboard" / "my_log.txt").write_text("mine")
    Trainer(tiny_config(tiny_classify_data), run, progress=False, overwrite=True)
    assert not (run / "weights" / "last.pt").exists() and not (run / "weights" / "best.pt").exists()
    assert not list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "notes.txt").is_file() and (run / "tensorboard" / "my_log.txt").is_file()
    assert (run / "config.yaml").is_file()  # replaced when the run starts, not deleted


def test_val_keeps_a_users_metrics_json_unless_overwrite(tiny_classify_run, tmp_path, capsys):
    best = str(tiny_classify_run.best)
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text('{"mine": 1}')
    (out / "notes.txt").write_text("mine")
    assert main(["val", best, "--out", str(out), "--quiet"]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {out / 'metrics.json'}: already exists") and "--overwrite" in line
    assert (out / "metrics.json").read_text() == '{"mine": 1}'
    assert main(["val", best, "--out", str(out), "--quiet", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["model"] == best
    assert (out / "notes.txt").read_text() == "mine"
    assert main(["val", best, "--out", str(out), "--quiet"]) == 0  # its own earlier output


def test_video_resume_replaces_no_file_it_did_not_write(model, tmp_path, capsys):
    vids = tmp_path / "vids"
    vids.mkdir()
    first, _ = write_video(vids / "a.avi", 2), write_video(vids / "b.avi", 2)
    out = tmp_path / "out"
    assert _predict(model, first, out, "--save-video") == 0
    (out / "videos" / "b.mp4").write_bytes(b"the user's film")
    assert _predict(model, vids, out, "--save-video", "--resume") == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: {out / 'videos' / 'b.mp4'}: not written by the run")
    assert (out / "videos" / "b.mp4").read_bytes() == b"the user's film"
    assert _files(out / "videos") == ["a.mp4", "b.mp4"]


def test_resume_draws_over_no_file_it_did_not_write(model, tmp_path, capsys):
    src = tmp_path / "src"
    _image(src / "a.png"), _image(src / "b.png")
    out = tmp_path / "out"
    assert _predict(model, src / "a.png", out, "--save-images") == 0
    (out / "images" / "b.png").write_bytes(b"the user's photo")
    assert _predict(model, src, out, "--save-images", "--resume") == 2
    assert _error_line(capsys).startswith(f"error: {out / 'images' / 'b.png'}: not a drawing")
    assert (out / "images" / "b.png").read_bytes() == b"the user's photo"
