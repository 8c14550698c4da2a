"""YOLO (Ultralytics) layout: read like COCO json, bad labels reported, COCO <-> YOLO conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from testkit import coco_split

from vision_tasks.cli import main
from vision_tasks.config import load_config
from vision_tasks.data.coco_detection import DetectionDataset
from vision_tasks.data.synth import write_coco
from vision_tasks.data.yolo import YoloSplit, read_yolo
from vision_tasks.data.yolo_convert import coco_to_yolo, yolo_to_coco
from vision_tasks.errors import DataError
from vision_tasks.task_api import get_task


@pytest.fixture(scope="module")
def synth_sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("yolo")
    write_coco(root / "coco", 6, 3, 64, seed=4, min_objects=1, max_objects=5)
    coco_to_yolo(root / "coco", root / "yolo_boxes")
    coco_to_yolo(root / "coco", root / "yolo_segments", segments=True)
    yolo_to_coco(root / "yolo_segments" / "data.yaml", root / "coco_from_segments")
    return {"root": root, "coco": root / "coco", "boxes": root / "yolo_boxes" / "data.yaml",
            "segments": root / "yolo_segments" / "data.yaml",
            "coco_from_segments": root / "coco_from_segments"}


def _assert_same_items(a, b, masks: bool = False) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        (image_a, ta), (image_b, tb) = a[i], b[i]
        assert torch.equal(image_a, image_b)
        np.testing.assert_allclose(ta["boxes"], tb["boxes"], atol=1e-3)
        np.testing.assert_array_equal(ta["labels"], tb["labels"])
        assert ta["letterbox"] == tb["letterbox"]
        assert ta["coco"]["image_id"] == tb["coco"]["image_id"]
        assert [g["category_id"] for g in ta["coco"]["annotations"]] == \
            [g["category_id"] for g in tb["coco"]["annotations"]]
        if masks:
            np.testing.assert_array_equal(ta["masks"], tb["masks"])


@pytest.mark.parametrize("train", [False, True])
def test_the_same_set_in_coco_and_yolo_layouts_gives_identical_detect_targets(synth_sets, train):
    task = get_task("detect")
    coco_cfg = load_config(None, ["task=detect", "data.image_size=64",
                                  f"data.train={coco_split(synth_sets['coco'], 'train')}",
                                  f"data.val={coco_split(synth_sets['coco'], 'val')}"])
    yolo_cfg = load_config(None, ["task=detect", "data.image_size=64",
                                  f"data.yolo={synth_sets['boxes']}"])
    for split in ("train", "val"):
        a = task.build_dataset(coco_cfg, split, train)
        b = task.build_dataset(yolo_cfg, split, train)
        assert a.class_names == b.class_names
        _assert_same_items(a, b)


def test_yolo_polygons_and_their_coco_conversion_give_identical_segment_targets(synth_sets):
    coco = synth_sets["coco_from_segments"] / "train"
    a = DetectionDataset(coco / "annotations.json", coco / "images", "data.train", 64, masks=True)
    b = DetectionDataset(YoloSplit(synth_sets["segments"], "train"), "", "data.train", 64,
                         masks=True)
    assert a.objects == b.objects > 0
    _assert_same_items(a, b, masks=True)


def test_coco_yolo_coco_round_trip_keeps_every_box_within_1e3_px(synth_sets, tmp_path):
    yolo_to_coco(synth_sets["boxes"], tmp_path / "back")
    for split in ("train", "val"):
        before = json.loads((synth_sets["coco"] / split / "annotations.json").read_text())
        after = json.loads((tmp_path / "back" / split / "annotations.json").read_text())
        assert [im["file_name"] for im in before["images"]] == \
            [im["file_name"] for im in after["images"]]
        assert len(before["annotations"]) == len(after["annotations"]) > 0
        for x, y in zip(before["annotations"], after["annotations"], strict=True):
            assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
            np.testing.assert_allclose(x["bbox"], y["bbox"], atol=1e-3)


def test_mask_outlines_keep_each_tight_box_and_polygons_survive_yolo_coco_yolo(synth_sets, tmp_path):
    coco = json.loads((synth_sets["coco"] / "train" / "annotations.json").read_text())
    index = read_yolo(YoloSplit(synth_sets["segments"], "train"))
    got = [a.box for im in index.images for a in im.annotations]
    want = [(x, y, x + w, y + h) for x, y, w, h in (a["bbox"] for a in coco["annotations"])]
    np.testing.assert_allclose(got, want, atol=1e-3)
    coco_to_yolo(synth_sets["coco_from_segments"], tmp_path / "again", segments=True)
    for label in (synth_sets["segments"].parent / "labels" / "train").glob("*.txt"):
        again = tmp_path / "again" / "labels" / "train" / label.name
        for x, y in zip(label.read_text().splitlines(), again.read_text().splitlines(), strict=True):
            np.testing.assert_allclose(np.float64(x.split()), np.float64(y.split()),
                                       atol=1e-3 / 64)


def _bad_set(root: Path) -> Path:
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    from PIL import Image

    for name in ("a", "b", "c"):
        Image.new("RGB", (40, 20)).save(root / "images" / "train" / f"{name}.png")
    (root / "labels" / "train" / "a.txt").write_text(
        "0 0.5 0.5 0.5 0.5\n"           # good box
        "1 0.5 1.5 0.2 0.2\n"           # value outside 0..1
        "0 0.1 0.1 0.9 0.1 0.5\n"       # odd number of polygon coordinates
        "7 0.5 0.5 0.1 0.1\n"           # class id past names
        "x y z\n"                       # not numbers
        "\n"
        "1 0.1 0.1 0.9 0.1 0.5 0.9\n")  # good polygon
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "val.txt").write_text("images/train/b.png\n../../etc/passwd\nimages/train/nope.png\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: val.txt\n"
                                    "names: [box, triangle]\n")
    return root / "data.yaml"


def test_bad_labels_are_counted_and_named_with_file_and_line_and_never_stop_reading(tmp_path):
    data_yaml = _bad_set(tmp_path)
    index = read_yolo(YoloSplit(data_yaml, "train"))
    assert len(index.images) == 3
    (a,) = [im for im in index.images if im.file_name.endswith("a.png")]
    assert [x.category for x in a.annotations] == [0, 1]
    assert a.annotations[0].box == pytest.approx((10.0, 5.0, 30.0, 15.0))
    assert a.annotations[1].segmentation == [[4.0, 2.0, 36.0, 2.0, 20.0, 18.0]]
    problems = "\n".join(index.problems)
    assert len(index.problems) == 5
    for line, words in ((2, "value 1.5 outside 0..1"), (3, "an odd number"), (4, "class 7 past"),
                        (5, "not numbers")):
        assert f"a.txt:{line}: {words}" in problems
    assert "orphan.txt: label file without its image" in problems
    notes = index.box_notes()
    assert "5 bad labels left out" in notes and "a.txt:2" in notes

    val = read_yolo(YoloSplit(data_yaml, "val"))
    assert [im.file_name for im in val.images] == ["images/train/b.png"]
    assert any("leaves the images folder" in p for p in val.problems)
    assert any("nope.png not found" in p for p in val.problems)
    dataset = DetectionDataset(YoloSplit(data_yaml, "train"), "", "data.train", 32)
    assert "5 bad labels left out" in dataset.summary()
    assert len(dataset) == 3 and dataset[0][1]["boxes"].shape[1] == 4


def test_a_split_that_leaves_the_data_root_or_a_missing_yaml_is_one_line_error(tmp_path):
    data_yaml = _bad_set(tmp_path / "set")
    data_yaml.write_text("path: .\ntrain: ../../outside\nnames: [a]\n")
    with pytest.raises(DataError, match="leaves the images folder") as err:
        read_yolo(YoloSplit(data_yaml, "train"))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="no 'val' entry"):
        read_yolo(YoloSplit(data_yaml, "val"))
    with pytest.raises(DataError, match="not found"):
        read_yolo(YoloSplit(tmp_path / "nope.yaml", "train"))


def test_cli_data_convert_both_ways(synth_sets, tmp_path, capsys):
    assert main(["data", "convert", str(synth_sets["coco"]), str(tmp_path / "y")]) == 0
    assert (tmp_path / "y" / "data.yaml").is_file()
    assert main(["data", "convert", str(tmp_path / "y" / "data.yaml"), str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "train: 6 images" in out and (tmp_path / "c" / "val" / "annotations.json").is_file()
