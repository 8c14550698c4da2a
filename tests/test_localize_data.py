"""Single-object data: boxes through letterbox and augmentation, and the multi-object policy."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision_tasks.config import AugmentConfig, load_config
from vision_tasks.data.single_object import SingleObjectDataset, build_single_object
from vision_tasks.data.synth import mask_to_box
from vision_tasks.data.transforms import build_augment
from vision_tasks.errors import ConfigError, DataError
from vision_tasks.imaging import letterbox, load_image

RED = np.array([255, 0, 0])
NO_COLOUR = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def write_coco_set(root: Path, images: list[tuple[int, int, list[dict]]],
                   categories: tuple[str, ...] = ("cat", "dog")) -> tuple[Path, Path]:
    """``images``: (width, height, annotations); each annotation's integer ``bbox``
    [x, y, w, h] is also painted as a solid red rectangle on a green image."""
    image_dir = root / "images"
    image_dir.mkdir(parents=True)
    entries, annotations = [], []
    for i, (width, height, anns) in enumerate(images):
        pixels = np.full((height, width, 3), (40, 160, 40), np.uint8)
        for ann in anns:
            x, y, w, h = ann["bbox"]
            if not ann.get("iscrowd"):
                pixels[y:y + h, x:x + w] = RED
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **ann})
        cv2.imwrite(str(image_dir / f"{i}.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        entries.append({"id": i + 1, "file_name": f"{i}.png", "width": width, "height": height})
    cats = [{"id": 10 * (i + 1), "name": name} for i, name in enumerate(categories)]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": entries, "categories": cats, "annotations": annotations}))
    return path, image_dir


def red_box(image: np.ndarray) -> tuple[float, float, float, float]:
    """Pixel box (x1, y1, x2, y2) of the pixels nearer to red than to anything else drawn."""
    distance = np.abs(image.astype(int) - RED).sum(axis=2)
    return mask_to_box(distance < 255)


def obj(x: int, y: int, w: int, h: int, category: int = 10, **extra: object) -> dict:
    return {"bbox": [x, y, w, h], "category_id": category, **extra}


def test_box_stays_on_the_object_under_flip_scale_and_translate(tmp_path: Path) -> None:
    ann, images = write_coco_set(tmp_path, [(64, 64, [obj(8, 12, 20, 14)]),
                                            (48, 80, [obj(20, 30, 16, 30)])])
    augment = build_augment(AugmentConfig(hflip=0.5, vflip=0.5, scale=[0.7, 1.3], translate=0.15,
                                          **NO_COLOUR), with_boxes=True)
    data = SingleObjectDataset(ann, images, "data.train", 64, augment=augment)
    plain = SingleObjectDataset(ann, images, "data.train", 64)
    moved = 0
    for epoch in range(12):
        for index in range(len(data)):
            image, target = data[(epoch, index)]
            box = target["box"].numpy()
            pixels = image.permute(1, 2, 0).numpy()
            np.testing.assert_allclose(red_box(pixels), box, atol=1.5)
            moved += not np.allclose(box, plain[index][1]["box"].numpy(), atol=0.5)
    assert moved >= 12  # the augmentation really moved most boxes


def test_augmentation_that_loses_the_box_falls_back_to_the_plain_sample(tmp_path: Path) -> None:
    ann, images = write_coco_set(tmp_path, [(64, 64, [obj(0, 0, 8, 8)])])
    zoom = build_augment(AugmentConfig(hflip=0.0, scale=[3.0, 3.0], translate=0.0, **NO_COLOUR),
                         with_boxes=True)  # a corner object always leaves the frame
    data = SingleObjectDataset(ann, images, "data.train", 64, augment=zoom)
    image, target = data[(3, 0)]
    plain_image, plain_target = SingleObjectDataset(ann, images, "data.train", 64)[0]
    assert data.augment_fallbacks == 1
    assert (image == plain_image).all() and (target["box"] == plain_target["box"]).all()
    np.testing.assert_allclose(target["box"].numpy(), [0, 0, 8, 8], atol=1e-4)


@pytest.mark.parametrize("width, height", [(30, 80), (90, 40)], ids=["portrait", "landscape"])
def test_letterboxed_boxes_map_back_to_original_coordinates(tmp_path: Path, width: int,
                                                            height: int) -> None:
    x, y, w, h = width // 5, height // 4, width // 2, height // 3
    ann, images = write_coco_set(tmp_path, [(width, height, [obj(x, y, w, h)])])
    image, target = SingleObjectDataset(ann, images, "data.val", 64)[0]
    box = target["box"].numpy()
    _, lb = letterbox(load_image(images / "0.png"), 64)
    np.testing.assert_allclose(lb.boxes_to_original(box[None])[0], [x, y, x + w, y + h], atol=1e-3)
    np.testing.assert_allclose(red_box(image.permute(1, 2, 0).numpy()), box, atol=1.0)
    assert (lb.pad_x > 0) == (width < height) and (lb.pad_y > 0) == (width > height)


def policy_set(tmp_path: Path) -> tuple[Path, Path]:
    return write_coco_set(tmp_path, [
        (32, 32, [obj(2, 2, 10, 10)]),                                      # single
        (32, 32, [obj(1, 1, 5, 5, 10), obj(10, 10, 20, 20, 20), obj(0, 0, 4, 4)]),  # several
        (32, 32, []),                                                       # no object
        (32, 32, [obj(4, 4, 8, 8, 20), obj(0, 0, 32, 32, 10, iscrowd=1)]),  # one + crowd
        (32, 32, [obj(3, 3, 0, 5)]),                                        # zero-area only
    ])


def localize_config(ann: Path, images: Path, *extra: str):
    split = json.dumps({"images": str(images), "annotations": str(ann)})
    return load_config(None, [f"data.train={split}", f"data.val={split}", "data.image_size=32",
                              *extra], base={"task": "localize"})


def test_multi_object_policy_skip_drops_the_image_and_reports_it(tmp_path: Path) -> None:
    ann, images = policy_set(tmp_path)
    lines: list[str] = []
    data = build_single_object(localize_config(ann, images), "train", False, "skip", log=lines.append)
    r = data.report
    assert (r.used, r.single, r.multi_object_skipped, r.multi_object_largest) == (2, 2, 1, 0)
    assert (r.no_object, r.crowd_ignored, r.degenerate_ignored) == (2, 1, 1)
    assert [data[i][1]["label"] for i in range(len(data))] == [0, 1]  # crowd is not the object
    assert data.multi_object_policy == "skip"
    assert "2 of 5 images used" in lines[0] and "1 multi-object skipped" in lines[0]


def test_multi_object_policy_largest_keeps_the_largest_box_and_reports_it(tmp_path: Path) -> None:
    ann, images = policy_set(tmp_path)
    cfg = localize_config(ann, images, "task_options.multi_object=largest")
    lines: list[str] = []
    from vision_tasks.tasks.localize.training import (
        TASK,  # through the task: the policy comes from the config
    )

    data = build_single_object(cfg, "train", False, cfg.task_options.multi_object, log=lines.append)
    assert len(TASK.build_dataset(cfg, "val", False)) == 3
    assert (data.report.used, data.report.multi_object_largest) == (3, 1)
    _, target = data[1]
    np.testing.assert_allclose(target["box"].numpy(), [10, 10, 30, 30], atol=1e-4)
    assert target["label"] == 1 and "1 multi-object -> largest" in lines[0]


def test_unknown_multi_object_policy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="task_options.multi_object: expected one of"):
        localize_config(tmp_path / "a.json", tmp_path, "task_options.multi_object=all")


def test_val_set_maps_categories_onto_the_models_classes(tmp_path: Path) -> None:
    ann, images = write_coco_set(tmp_path, [(32, 32, [obj(2, 2, 10, 10, 20)])], ("cat", "dog"))
    data = SingleObjectDataset(ann, images, "data.val", 32, class_names=["ant", "dog", "cat"])
    assert data[0][1]["label"] == 1 and data.category_ids == [None, 20, 10]
    with pytest.raises(DataError, match=r"categories the model does not know: \['cat'\]"):
        SingleObjectDataset(ann, images, "data.val", 32, class_names=["dog"])


def test_split_that_is_not_images_and_annotations_is_a_clear_error(tmp_path: Path) -> None:
    cfg = load_config(None, [f"data.train={tmp_path}"], base={"task": "localize"})
    with pytest.raises(DataError, match=r"data.train: expected \{images: DIR, annotations: FILE\}"):
        build_single_object(cfg, "train", True, "skip")


def test_undecodable_image_is_skipped_with_a_warning(tmp_path: Path) -> None:
    ann, images = write_coco_set(tmp_path, [(32, 32, [obj(1, 1, 4, 4)]),
                                            (32, 32, [obj(5, 5, 9, 9, 20)])])
    (images / "0.png").write_bytes(b"not a png")
    data = SingleObjectDataset(ann, images, "data.train", 32)
    with pytest.warns(UserWarning, match="0.png"):
        _, target = data[0]
    assert target["label"] == 1
