"""Tests for the deterministic synthetic shapes generator."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from vision_tasks.data.synth import (
    SHAPE_NAMES,
    mask_to_box,
    render_scene,
    visible_masks,
    write_coco,
    write_imagefolder,
)


def _read_tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _colours(image: np.ndarray, mask: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in px) for px in image[mask]}


@pytest.mark.parametrize("writer", [write_imagefolder, write_coco])
def test_same_seed_gives_byte_identical_files_and_other_seed_differs(writer, tmp_path):
    writer(tmp_path / "a", 4, 2, 32, seed=7)
    writer(tmp_path / "b", 4, 2, 32, seed=7)
    writer(tmp_path / "c", 4, 2, 32, seed=8)
    a, b, c = (_read_tree(tmp_path / k) for k in "abc")
    assert a == b
    assert a != c


def test_imagefolder_has_all_class_folders_in_both_splits_and_right_counts(tmp_path):
    summary = write_imagefolder(tmp_path, 6, 3, 32, seed=0)
    for split, n in (("train", 6), ("val", 3)):
        folders = sorted(p.name for p in (tmp_path / split).iterdir())
        assert folders == sorted(SHAPE_NAMES)
        files = list((tmp_path / split).rglob("*.png"))
        assert len(files) == n
        assert summary["splits"][split]["images"] == n
        assert sum(summary["splits"][split]["per_class"].values()) == n
        image = cv2.imread(str(files[0]))
        assert image.shape == (32, 32, 3)
    assert summary["layout"] == "imagefolder"


def test_coco_annotations_load_and_match_decoded_masks(tmp_path):
    summary = write_coco(tmp_path, 5, 2, 48, seed=3, min_objects=1, max_objects=4)
    for split, n in (("train", 5), ("val", 2)):
        ann_file = tmp_path / split / "annotations.json"
        coco = COCO(str(ann_file))
        assert sorted(coco.getCatIds()) == [1, 2, 3, 4, 5]
        assert [c["name"] for c in coco.loadCats([1, 2, 3, 4, 5])] == list(SHAPE_NAMES)
        assert len(coco.getImgIds()) == n
        for img in coco.loadImgs(coco.getImgIds()):
            assert (tmp_path / split / "images" / img["file_name"]).is_file()
            # predict takes a numeric file stem as the COCO image id: they must agree
            assert int(Path(img["file_name"]).stem) == img["id"]
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns and len(anns) == summary["splits"][split]["annotations"]
        for ann in anns:
            mask = mask_utils.decode(ann["segmentation"]).astype(bool)
            x1, y1, x2, y2 = _tight_box(mask)
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert ann["area"] == int(mask.sum())
            assert ann["iscrowd"] == 0
        info = json.loads(ann_file.read_text())["info"]
        assert info["seed"] == 3 and info["split"] == split
    assert not list(tmp_path.rglob("*.tmp"))


def test_visible_masks_remove_pixels_painted_over_by_later_objects():
    first = np.zeros((10, 10), bool)
    first[2:6, 2:6] = True
    second = np.zeros((10, 10), bool)
    second[4:8, 4:8] = True
    vis_first, vis_second = visible_masks([first, second])
    assert not vis_first[4:6, 4:6].any()
    assert vis_first.sum() == 16 - 4
    assert np.array_equal(vis_second, second)


def test_rendered_masks_are_disjoint_and_cover_exactly_each_objects_painted_colours():
    image, objects = render_scene(np.random.default_rng(0), 128, 5)
    assert len(objects) >= 3
    masks = [o.mask for o in objects]
    union = np.zeros_like(masks[0])
    for m in masks:
        assert m.dtype == bool and m.shape == (128, 128)
        assert not (union & m).any()  # pairwise disjoint
        union |= m
    colour_sets = [_colours(image, m) for m in masks]
    for i, colours in enumerate(colour_sets):
        assert 1 <= len(colours) <= 2  # fill, optionally an outline
        for j in range(i + 1, len(colour_sets)):
            assert not colours & colour_sets[j]
    # Some earlier object touches a later one, i.e. occlusion happened in this scene.
    kernel = np.ones((3, 3), np.uint8)
    grown = [cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in masks]
    pairs = [(i, j) for i in range(len(masks)) for j in range(i + 1, len(masks))]
    assert any((grown[i] & masks[j]).any() for i, j in pairs)
    # No object colour leaks outside the masks (no anti-aliasing, no unannotated fragments).
    ring = cv2.dilate(union.astype(np.uint8), kernel).astype(bool) & ~union
    assert not _colours(image, ring) & set().union(*colour_sets)


def test_boxes_are_tight_around_visible_masks():
    for seed in range(5):
        _, objects = render_scene(np.random.default_rng(seed), 64, 4)
        for obj in objects:
            assert obj.box == _tight_box(obj.mask) == mask_to_box(obj.mask)
            assert 0 <= obj.box[0] < obj.box[2] <= 64 and 0 <= obj.box[1] < obj.box[3] <= 64


def test_non_occluding_scenes_have_no_touching_objects():
    for seed in range(5):
        _, objects = render_scene(np.random.default_rng(seed), 64, 6, occlusion=False)
        kernel = np.ones((3, 3), np.uint8)
        for i, a in enumerate(objects):
            grown = cv2.dilate(a.mask.astype(np.uint8), kernel).astype(bool)
            assert not any((grown & b.mask).any() for b in objects[i + 1 :])


def test_single_object_scenes_always_keep_one_large_object():
    for seed in range(10):
        _, objects = render_scene(np.random.default_rng(seed), 64, 1)
        assert len(objects) == 1
        x1, y1, x2, y2 = objects[0].box
        assert max(x2 - x1, y2 - y1) >= 0.25 * 64


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    write_coco(tmp_path, 2, 1, 32, seed=0)
    with pytest.raises(FileExistsError):
        write_coco(tmp_path, 2, 1, 32, seed=0)
    write_coco(tmp_path, 1, 1, 32, seed=1, overwrite=True)
    assert len(list((tmp_path / "train" / "images").glob("*.png"))) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda p: write_imagefolder(p, 1, 1, 15, 0),
        lambda p: write_imagefolder(p, -1, 1, 32, 0),
        lambda p: write_coco(p, 1, -2, 32, 0),
        lambda p: write_coco(p, 1, 1, 8, 0),
        lambda p: write_coco(p, 1, 1, 32, 0, min_objects=3, max_objects=2),
        lambda p: render_scene(np.random.default_rng(0), 10, 1),
        lambda p: render_scene(np.random.default_rng(0), 32, -1),
    ],
)
def test_invalid_arguments_raise_value_error(call, tmp_path):
    with pytest.raises(ValueError):
        call(tmp_path)
