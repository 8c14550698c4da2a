"""`vision-tasks predict` on videos: frames counted, stride, resume after an interrupt, truncated
and unreadable files, streams that drop, --track ids in the lines and the MOT file,
--save-video. A stand-in detect model (onnx.helper, no torch) boxes the red and the green
pixels of each frame, so the videos are a few frames of two coloured squares."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from vision_tasks.export.runtime import ModelMetadata, video_job
from vision_tasks.export.runtime.sources import SourceError
from vision_tasks.export.runtime.video import VideoReader, find_videos
from vision_tasks.export.runtime.video_job import read_progress

from vision_tasks.cli import main
from vision_tasks.task_spec import get_spec

INPUT = (64, 96)  # model input (H, W)
SIZE = (120, 80)  # video frames (W, H)
FPS = 10.0


def colour_box_model(path: Path) -> Path:
    """A detect model: box 0 around the pixels whose red channel is above 128, box 1 around
    the green ones (input pixels), scores 0.9, labels 0 and 1, both always reported."""
    nodes = [helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("Greater", ["pixels", "half"], ["bright_bool"]),
             helper.make_node("Cast", ["bright_bool"], ["bright_all"], to=TensorProto.FLOAT),
             helper.make_node("Gather", ["bright_all", "channels"], ["bright"], axis=3),
             helper.make_node("ReduceMax", ["bright", "axis_h"], ["cols"], keepdims=0),
             helper.make_node("ReduceMax", ["bright", "axis_w"], ["rows"], keepdims=0)]
    corners = []
    for name, profile, last in (("x1", "cols", 0), ("y1", "rows", 0), ("x2", "cols", 1),
                                ("y2", "rows", 1)):
        nodes += [helper.make_node("ArgMax", [profile], [f"{name}_i"], axis=1, keepdims=1,
                                   select_last_index=last),
                  helper.make_node("Cast", [f"{name}_i"], [f"{name}_f"], to=TensorProto.FLOAT)]
        if last:
            nodes.append(helper.make_node("Add", [f"{name}_f", "one"], [f"{name}_e"]))
        corners.append(f"{name}_e" if last else f"{name}_f")
    nodes += [helper.make_node("Concat", corners, ["boxes_t"], axis=1),  # [N, 4, 2]
              helper.make_node("Transpose", ["boxes_t"], ["boxes"], perm=[0, 2, 1]),
              helper.make_node("Shape", ["images"], ["batch"], end=1),
              helper.make_node("Concat", ["batch", "two"], ["nk"], axis=0),
              helper.make_node("Expand", ["score_row", "nk"], ["scores"]),
              helper.make_node("Expand", ["label_row", "nk"], ["labels"]),
              helper.make_node("Expand", ["count", "batch"], ["num_detections"])]
    inits = [numpy_helper.from_array(np.array(128, np.float32), "half"),
             numpy_helper.from_array(np.array([0, 1], np.int64), "channels"),
             numpy_helper.from_array(np.array([1], np.int64), "axis_h"),
             numpy_helper.from_array(np.array([2], np.int64), "axis_w"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array([0.9, 0.9], np.float32), "score_row"),
             numpy_helper.from_array(np.array([0, 1], np.int64), "label_row"),
             numpy_helper.from_array(np.array([2], np.int64), "count")]
    outputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 2, 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2]),
               helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", 2]),
               helper.make_tensor_value_info("num_detections", TensorProto.INT64, ["N"])]
    graph = helper.make_graph(nodes, "colour_boxes", [helper.make_tensor_value_info(
        "images", TensorProto.UINT8, ["N", *INPUT, 3])], outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    meta = ModelMetadata(task="detect", class_names=("red", "green"), input_size=INPUT,
                         outputs=get_spec("detect").output_names, max_detections=2,
                         thresholds={"score": 0.25, "iou": 0.5}, package_version="test",
                         config={})
    helper.set_model_props(proto, meta.to_props())
    onnx.save(proto, str(path))
    return path


def square_positions(i: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Top-left corners of the red and the green 16 px squares in frame ``i``: they cross
    (half overlapping) between frames 14 and 15."""
    return (8 + 3 * i, 20), (96 - 3 * i, 28)


def write_video(path: Path, frames: int) -> Path:
    """An MJPEG .avi of ``frames`` frames of the two squares on black."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for i in range(frames):
        image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        (rx, ry), (gx, gy) = square_positions(i)
        image[ry:ry + 16, rx:rx + 16] = (0, 0, 255)  # BGR
        image[gy:gy + 16, gx:gx + 16] = (0, 255, 0)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return colour_box_model(tmp_path_factory.mktemp("video") / "boxes.onnx")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("clips") / "clip.avi", 24)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _predict(model: Path, source: Path | str, out: Path, *extra: str) -> int:
    return main(["predict", str(model), str(source), "--out", str(out), "--quiet",
                 "--batch-size", "4", "--workers", "2", "--threads", "1", *extra])


def test_every_frame_is_one_line_with_its_index_and_timestamp(model, clip, tmp_path):
    assert _predict(model, clip, tmp_path / "out") == 0
    lines = _lines(tmp_path / "out" / "predictions.jsonl")
    assert [line["frame"] for line in lines] == list(range(24))
    assert all(line["source"] == str(clip) for line in lines)
    assert [line["timestamp"] for line in lines] == pytest.approx([i / FPS for i in range(24)])
    (rx, ry), _ = square_positions(3)
    red = lines[3]["detections"][0]
    assert red["name"] == "red" and red["box"] == pytest.approx([rx, ry, rx + 16, ry + 16], abs=2)


def test_vid_stride_keeps_every_nth_frame(model, clip, tmp_path):
    assert _predict(model, clip, tmp_path / "out", "--vid-stride", "5") == 0
    assert [line["frame"] for line in _lines(tmp_path / "out" / "predictions.jsonl")] == [0, 5, 10, 15, 20]


def test_resume_after_an_interrupt_mid_video_predicts_each_frame_once(model, clip, tmp_path,
                                                                       monkeypatch):
    written = []
    original = video_job._write_line

    def stop_after_five(writer, record):
        if len(written) == 5:
            writer.files["predictions"].write(b'{"source": "half a li')  # killed while writing
            raise KeyboardInterrupt
        written.append(record["frame"])
        original(writer, record)

    monkeypatch.setattr(video_job, "_write_line", stop_after_five)
    out = tmp_path / "out"
    assert _predict(model, clip, out, "--vid-stride", "2", "--track") == 130
    monkeypatch.undo()
    assert read_progress(out).last_frame == {str(clip): 8}  # the torn line is not a frame
    assert _predict(model, clip, out, "--vid-stride", "2", "--track", "--resume") == 0
    lines = _lines(out / "predictions.jsonl")
    assert [line["frame"] for line in lines] == list(range(0, 24, 2))
    mot = (out / "mot" / "clip.txt").read_text().splitlines()
    assert sorted({int(row.split(",")[0]) for row in mot}) == list(range(1, 25, 2))


def test_resume_refuses_another_stride(model, clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(model, clip, out) == 0
    assert _predict(model, clip, out, "--vid-stride", "2", "--resume") == 2
    assert "vid_stride" in capsys.readouterr().err


def test_a_truncated_video_keeps_the_frames_before_the_cut_and_says_so_in_one_line(
        model, tmp_path, capsys):
    whole = write_video(tmp_path / "whole.avi", 30).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole[:len(whole) // 2])
    assert _predict(model, cut, tmp_path / "out") == 0
    frames = [line["frame"] for line in _lines(tmp_path / "out" / "predictions.jsonl")]
    assert frames and frames == list(range(len(frames))) and len(frames) < 30
    errors = _lines(tmp_path / "out" / "errors.jsonl")
    assert len(errors) == 1 and errors[0]["source"] == str(cut)
    assert "truncated or corrupt" in errors[0]["error"] and "\n" not in errors[0]["error"]
    assert f"the {len(frames)} frames before are kept" in capsys.readouterr().err


def test_a_file_that_is_no_video_is_an_error_line_and_exit_2(model, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all\n" * 10)
    assert _predict(model, bad, tmp_path / "out") == 2
    errors = _lines(tmp_path / "out" / "errors.jsonl")
    assert len(errors) == 1 and "cannot be opened as a video" in errors[0]["error"]
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: no frame of this run" in err


def test_track_ids_follow_the_two_squares_and_save_video_has_every_frame(model, clip, tmp_path):
    out = tmp_path / "out"
    assert _predict(model, clip, out, "--track", "--save-video") == 0
    lines = _lines(out / "predictions.jsonl")
    ids = {(d["name"], d["track_id"]) for line in lines for d in line["detections"]}
    assert ids == {("red", 1), ("green", 2)}
    assert len((out / "mot" / "clip.txt").read_text().splitlines()) == 2 * 24
    capture = cv2.VideoCapture(str(out / "videos" / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 24
    assert not list((out / "videos").glob("*.partial.mp4"))


def test_video_flags_on_images_are_refused(model, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    assert _predict(model, tmp_path / "a.png", tmp_path / "out", "--track") == 2
    assert "--track is an option of videos" in capsys.readouterr().err


def test_a_folder_of_videos_is_predicted_and_a_mixed_folder_refused(model, clip, tmp_path):
    folder = tmp_path / "clips"
    (folder / "sub").mkdir(parents=True)
    write_video(folder / "a.avi", 3)
    write_video(folder / "sub" / "b.avi", 2)
    assert find_videos(str(folder)) == [str(folder / "a.avi"), str(folder / "sub" / "b.avi")]
    assert _predict(model, folder, tmp_path / "out", "--track", "--save-video") == 0
    assert len(_lines(tmp_path / "out" / "predictions.jsonl")) == 5
    assert (tmp_path / "out" / "videos" / "sub" / "b.mp4").is_file()
    cv2.imwrite(str(folder / "still.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SourceError, match="both videos"):
        find_videos(str(folder))


class _FlakyCamera:
    """A stand-in capture: gives ``frames`` frames, then fails; each reopen gives more."""

    opened = 0

    def __init__(self, _source, frames: int = 3, up: bool = True) -> None:
        type(self).opened += 1
        self.left, self.up = frames, up

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self.up

    def get(self, _prop) -> float:
        return 0.0

    def grab(self) -> bool:
        self.left -= 1
        return self.left >= 0

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((4, 6, 3), np.uint8)

    def release(self) -> None:
        pass


def test_a_dropped_stream_reconnects_a_bounded_number_of_times():
    notes: list[str] = []
    _FlakyCamera.opened = 0
    opens = iter([True, True, False, False])
    reader = VideoReader("rtsp://camera.local/live", reconnects=2, retry_seconds=0, log=notes.append,
                         open_capture=lambda s: _FlakyCamera(s, up=next(opens)))
    frames = [f.index for f in reader]
    assert frames == list(range(6))  # 3 frames, a drop, 3 more, then it stays down
    assert len(notes) == 3 and "reconnecting (1/2)" in notes[0]
    assert "2 reconnects failed" in reader.error and "6 frames before are kept" in reader.error


def test_a_run_killed_mid_video_resumes_with_each_frame_once(model, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    video = write_video(tmp_path / "long.avi", 600)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "vision_tasks", "predict", str(model), str(video), "--out",
               str(out), "--quiet", "--batch-size", "1", "--workers", "1", "--threads", "1",
               "--track"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            path = out / "predictions.jsonl"
            if path.is_file() and path.read_bytes().count(b"\n") >= 5:
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    subprocess.run([*command, "--resume"], check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = _lines(out / "predictions.jsonl")
    assert [line["frame"] for line in lines] == list(range(600))
    mot = [tuple(map(int, row.split(",")[:2])) for row in
           (out / "mot" / "long.txt").read_text().splitlines()]
    assert len(mot) == len(set(mot))  # each (frame, track id) once
    assert set(mot) == {(line["frame"] + 1, d["track_id"]) for line in lines
                        for d in line["detections"]}
