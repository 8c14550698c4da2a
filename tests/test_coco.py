"""The shared COCO json reader: id mapping, crowd flags, safe paths, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vision_tasks.data.coco import read_coco, safe_image_path
from vision_tasks.errors import DataError

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128"


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def small_coco(**changes: object) -> dict:
    data = {
        "images": [{"id": 7, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 9, "file_name": "sub/b.png", "width": 20, "height": 20}],
        "categories": [{"id": 90, "name": "zebra"}, {"id": 3, "name": "cat"},
                       {"id": 17, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 17, "bbox": [1, 2, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 90, "bbox": [0, 0, 40, 30], "iscrowd": 1,
             "area": 99.0, "segmentation": {"counts": "x", "size": [30, 40]}},
            {"id": 3, "image_id": 9, "category_id": 3, "bbox": [5, 5, 0, 4]},
        ],
    }
    data.update(changes)
    return data


def test_non_contiguous_category_ids_map_to_contiguous_indices_and_back(tmp_path: Path) -> None:
    index = read_coco(write_json(tmp_path / "ann.json", small_coco()), tmp_path)
    assert index.class_names == ["cat", "dog", "zebra"]  # sorted by id: 3, 17, 90
    assert index.category_ids == [3, 17, 90]
    first = index.images[0].annotations[0]
    assert index.category_ids[first.category] == 17
    assert index.category_index(90) == 2


def test_boxes_become_xyxy_crowd_is_flagged_and_zero_area_boxes_are_counted(tmp_path: Path) -> None:
    index = read_coco(write_json(tmp_path / "ann.json", small_coco()), tmp_path)
    a, crowd = index.images[0].annotations
    assert a.box == (1.0, 2.0, 11.0, 7.0) and not a.iscrowd and a.area == 50.0
    assert crowd.iscrowd and crowd.area == 99.0 and crowd.segmentation["size"] == [30, 40]
    assert index.images[1].annotations == [] and index.degenerate == 1
    assert index.images[1].path == tmp_path / "sub" / "b.png"


def test_missing_annotation_file_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_coco(tmp_path / "nope.json", tmp_path, "data.train")
    message = str(err.value)
    assert "nope.json" in message and "not found" in message and "\n" not in message


def test_malformed_json_is_a_one_line_error_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,,}\n]}', encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_coco(path, tmp_path)
    message = str(err.value)
    assert str(path) in message and "malformed JSON at line 2" in message and "\n" not in message


@pytest.mark.parametrize("name", ["../secret.png", "a/../../secret.png", "/etc/passwd",
                                  "..\\secret.png", "C:/x.png", ""])
def test_file_names_that_leave_the_images_folder_are_rejected(tmp_path: Path, name: str) -> None:
    images = [{"id": 1, "file_name": name}]
    path = write_json(tmp_path / "ann.json", small_coco(images=images, annotations=[]))
    with pytest.raises(DataError) as err:
        read_coco(path, tmp_path)
    message = str(err.value)
    assert str(path) in message and "images[0].file_name" in message and "\n" not in message


def test_file_names_inside_the_folder_are_accepted() -> None:
    root = Path("/data/images")
    assert safe_image_path(root, "a/../b.png", "x") == root / "b.png"
    assert safe_image_path(root, "./sub/c.jpg", "x") == root / "sub" / "c.jpg"


@pytest.mark.parametrize("changes, fragment", [
    ({"annotations": [{"image_id": 5, "category_id": 3, "bbox": [0, 0, 1, 1]}]},
     "annotations[0]: image_id 5 is not an id in 'images'"),
    ({"annotations": [{"image_id": 7, "category_id": 4, "bbox": [0, 0, 1, 1]}]},
     "annotations[0]: category_id 4 is not an id in 'categories'"),
    ({"annotations": [{"image_id": 7, "category_id": 3, "bbox": [0, 0, 1]}]},
     "annotations[0].bbox: expected [x, y, width, height]"),
    ({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}, "category id 1 appears twice"),
    ({"images": "nope"}, "no 'images' list"),
])
def test_invalid_entries_are_one_line_errors_naming_the_file_and_entry(
        tmp_path: Path, changes: dict, fragment: str) -> None:
    path = write_json(tmp_path / "ann.json", small_coco(**changes))
    with pytest.raises(DataError) as err:
        read_coco(path, tmp_path)
    assert str(path) in str(err.value) and fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.skipif(not COCO128.is_dir(), reason="shared coco128 not present")
def test_real_coco_file_keeps_ids_and_crowd_regions() -> None:
    index = read_coco(COCO128 / "annotations.json", COCO128 / "images")
    assert len(index.images) == 128 and len(index.class_names) == 80
    assert index.category_ids[0] == 1 and index.category_ids[-1] == 90
    annotations = [a for image in index.images for a in image.annotations]
    assert len(annotations) + index.degenerate == 939
    assert sum(a.iscrowd for a in annotations) == 10
    assert all(image.path.is_file() for image in index.images)
