"""The hard synthetic style: deterministic, its own classes, masks and boxes that match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from vision_tasks.cli import main
from vision_tasks.data.synth import mask_to_box, write_coco, write_imagefolder
from vision_tasks.data.synth_hard import HARD_SHAPE_NAMES, HARD_STYLE, render_hard_scene


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_hard_style_is_byte_identical_for_a_seed_and_has_its_own_class_folders(tmp_path):
    summary = write_imagefolder(tmp_path / "a", 6, 2, 48, seed=5, style=HARD_STYLE)
    write_imagefolder(tmp_path / "b", 6, 2, 48, seed=5, style=HARD_STYLE)
    write_imagefolder(tmp_path / "c", 6, 2, 48, seed=5)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert _tree(tmp_path / "a") != _tree(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "a" / "train").iterdir()) == sorted(HARD_SHAPE_NAMES)
    assert summary["style"] == "hard" and summary["classes"] == list(HARD_SHAPE_NAMES)


def test_hard_scenes_keep_visible_masks_disjoint_with_tight_boxes_and_cut_some_by_the_border():
    cut = 0
    for index in range(40):
        image, objects = render_hard_scene(np.random.default_rng([0, index]), 64, 4)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert objects
        total = np.zeros((64, 64), int)
        for obj in objects:
            assert obj.mask.sum() >= 16
            assert obj.box == mask_to_box(obj.mask)
            total += obj.mask
            edge = obj.mask[0].any() or obj.mask[-1].any() or obj.mask[:, 0].any() or obj.mask[:, -1].any()
            cut += bool(edge)
        assert total.max() == 1  # visible parts never overlap
    assert cut > 0


def test_single_hard_object_is_large():
    for index in range(30):
        _, objects = render_hard_scene(np.random.default_rng([1, index]), 100, 1)
        (obj,) = objects
        x1, y1, x2, y2 = obj.box
        assert max(x2 - x1, y2 - y1) >= 20


def test_hard_coco_set_round_trips_through_rle(tmp_path):
    write_coco(tmp_path, 4, 1, 64, seed=2, min_objects=1, max_objects=6, style=HARD_STYLE)
    data = json.loads((tmp_path / "train" / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == list(HARD_SHAPE_NAMES)
    assert data["info"]["style"] == "hard"
    for ann in data["annotations"]:
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        x1, y1, x2, y2 = mask_to_box(mask)
        assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_cli_data_synth_style_hard(task, tmp_path, capsys):
    assert main(["data", "synth", task, str(tmp_path), "--train", "3", "--val", "1",
                 "--size", "32", "--style", "hard"]) == 0
    assert "hard style" in capsys.readouterr().out
    names = ({p.name for p in (tmp_path / "train").iterdir()} if task == "classify" else
             {c["name"] for c in json.loads((tmp_path / "train" / "annotations.json")
                                            .read_text())["categories"]})
    assert names == set(HARD_SHAPE_NAMES)
