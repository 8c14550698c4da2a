"""Tests for vision_tasks.imaging: decoding every kind of source, its errors, and letterbox
geometry (the OpenCV fast path and reduced decoding: tests/test_fast_decode.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testkit import assert_rgb_uint8 as _assert_rgb_uint8
from testkit import noise as _noise
from testkit import save as _save

from vision_tasks.imaging import (
    PAD_VALUE,
    ImageError,
    Letterbox,
    letterbox,
    load_image,
)

# --- errors ----------------------------------------------------------------------------------


def test_zero_byte_file_raises_image_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty.jpg: empty file \\(0 bytes\\)"):
        load_image(path)


def test_truncated_jpeg_raises_image_error_naming_the_file(tmp_path: Path) -> None:
    full = _save(Image.fromarray(_noise(128, 128)), tmp_path / "full.jpg", quality=95)
    cut = tmp_path / "cut.jpg"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg: cannot decode image") as info:
        load_image(cut)
    assert "\n" not in str(info.value)
    with pytest.raises(ImageError, match="<bytes>: cannot decode image"):
        load_image(data[: len(data) // 2])


def test_text_file_named_jpg_raises_not_a_recognised_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageError, match="notes.jpg: not a recognised image"):
        load_image(str(path))


def test_missing_path_raises_file_not_found_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="nowhere.png: file not found; check the path"):
        load_image(tmp_path / "nowhere.png")


def test_decompression_bomb_raises_image_error(tmp_path: Path, monkeypatch) -> None:
    path = _save(Image.fromarray(_noise()), tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="huge.png: image too large"):
        load_image(path)


def test_image_error_is_a_value_error() -> None:
    assert issubclass(ImageError, ValueError)


@pytest.mark.parametrize(
    "array",
    [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 5, 2), np.uint8),
     np.zeros(7, np.uint8), np.zeros((4, 5, 3), np.complex64), np.zeros((4, 5), object)],
)
def test_unsupported_arrays_raise_image_error(array: np.ndarray) -> None:
    with pytest.raises(ImageError, match="<array>: unsupported array"):
        load_image(array)


def test_unsupported_source_type_raises_type_error() -> None:
    with pytest.raises(TypeError):
        load_image(42)  # type: ignore[arg-type]


# --- modes -----------------------------------------------------------------------------------


def test_grayscale_png_loads_as_rgb_with_equal_channels(tmp_path: Path) -> None:
    gray = _noise()[:, :, 0]
    arr = load_image(_save(Image.fromarray(gray, "L"), tmp_path / "gray.png"))
    _assert_rgb_uint8(arr, 40, 60)
    for c in range(3):
        np.testing.assert_array_equal(arr[:, :, c], gray)


def test_rgba_png_loads_as_rgb_with_alpha_dropped(tmp_path: Path) -> None:
    rgba = np.concatenate([_noise(), np.full((40, 60, 1), 7, np.uint8)], axis=2)
    arr = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    _assert_rgb_uint8(arr, 40, 60)
    np.testing.assert_array_equal(arr, rgba[:, :, :3])


def test_16bit_png_loads_as_uint8_scaled_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 257, 1000, 65535], [128, 129, 30000, 65534]], dtype=np.uint16)
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    arr = load_image(_save(img, tmp_path / "deep.png"))
    _assert_rgb_uint8(arr, 2, 4)
    expected = np.round(values / 257).astype(np.uint8)
    np.testing.assert_array_equal(arr[:, :, 0], expected)
    np.testing.assert_array_equal(arr[:, :, 2], expected)


def test_palette_png_loads_as_its_palette_colours(tmp_path: Path) -> None:
    rgb = Image.fromarray(_noise())
    pal = rgb.quantize(colors=16)
    pal.info["transparency"] = 0
    arr = load_image(_save(pal, tmp_path / "pal.png", transparency=0))
    _assert_rgb_uint8(arr, 40, 60)
    np.testing.assert_array_equal(arr, np.asarray(pal.convert("RGB")))


def test_exif_orientation_6_is_applied(tmp_path: Path) -> None:
    pixels = _noise(40, 60)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100)
    arr = load_image(path)
    _assert_rgb_uint8(arr, 60, 40)
    # orientation 6 means: rotate 90 degrees clockwise to display
    stored = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(arr.astype(int) - np.rot90(stored, k=-1)).max() == 0


# --- source kinds ----------------------------------------------------------------------------


def test_bytes_pil_and_numpy_inputs_agree_with_path_input(tmp_path: Path) -> None:
    pixels = _noise()
    path = _save(Image.fromarray(pixels), tmp_path / "img.png")
    from_path = load_image(path)
    np.testing.assert_array_equal(from_path, pixels)
    data = path.read_bytes()
    for source in (str(path), data, bytearray(data), memoryview(data), Image.open(path), pixels):
        np.testing.assert_array_equal(load_image(source), from_path)


def test_numpy_input_is_copied_not_aliased() -> None:
    pixels = _noise()
    out = load_image(pixels)
    out[0, 0] = 0
    assert out is not pixels and not np.shares_memory(out, pixels)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 128, 255]], np.uint8), [0, 128, 255]),
        (np.array([[[0], [128], [255]]], np.uint8), [0, 128, 255]),
        (np.array([[0, 257, 65535]], np.uint16), [0, 1, 255]),
        (np.array([[False, True, True]]), [0, 255, 255]),
        (np.array([[0.0, 0.5, 1.0]], np.float32), [0, 128, 255]),
        (np.array([[-0.0005, 0.2, 1.0005]], np.float64), [0, 51, 255]),  # rounding slack
        (np.array([[0, 100, 255]], np.int32), [0, 100, 255]),
        (np.array([[0, 7, 255]], np.int64), [0, 7, 255]),
    ],
)
def test_numpy_dtypes_and_gray_shapes_convert_to_uint8_rgb(array: np.ndarray, expected: list) -> None:
    out = load_image(array)
    _assert_rgb_uint8(out, 1, 3)
    np.testing.assert_array_equal(out, np.repeat(np.array(expected, np.uint8)[None, :, None], 3, 2))


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((8, 8, 3), 200.0, np.float32), "look like 0..255 levels: divide by 255"),
        (np.array([[-0.5, 0.5]], np.float32), "must be in [0, 1]"),
        (np.array([[np.nan, 0.5]], np.float64), "NaN or infinity"),
        (np.array([[0.5, np.inf]], np.float16), "NaN or infinity"),
        (np.array([[-3, 100]], np.int32), "levels 0..255"),
        (np.array([[0, 300]], np.uint32), "levels 0..255"),
        (np.zeros((3, 20, 30), np.uint8), "channels-first [C, H, W]; pass [H, W, C]"),
        (np.zeros((2, 20, 30, 3), np.uint8), "is a batch"),
        (np.zeros((4, 4), np.complex64), "unsupported array dtype"),
        (np.zeros((0, 4), np.uint8), "unsupported array shape"),
    ],
)
def test_numpy_values_outside_the_documented_rules_are_refused_not_clipped(
        array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageError) as err:
        load_image(array)
    text = str(err.value)
    assert text.startswith("<array>: ") and message in text and "\n" not in text


def test_numpy_rgba_drops_alpha() -> None:
    rgba = np.dstack([_noise(), np.zeros((40, 60), np.uint8)])
    np.testing.assert_array_equal(load_image(rgba), rgba[:, :, :3])


# --- letterbox -------------------------------------------------------------------------------


def _white_box(image: np.ndarray) -> np.ndarray:
    """xyxy box (pixel edges) of the bright pixels in a uint8 [H, W, 3] image."""
    ys, xs = np.nonzero(image[:, :, 0] > 127)  # midway between black and white, above the pad (114)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


@pytest.mark.parametrize(("h", "w"), [(300, 120), (120, 300)], ids=["portrait", "landscape"])
def test_letterbox_inverse_maps_boxes_back_to_original_image(h: int, w: int) -> None:
    image = np.zeros((h, w, 3), np.uint8)
    box = np.array([w * 0.25, h * 0.4, w * 0.75, h * 0.8]).round().astype(int)
    image[box[1]:box[3], box[0]:box[2]] = 255
    out, lb = letterbox(image, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert lb.scale == pytest.approx(64 / max(h, w))
    back = lb.boxes_to_original(_white_box(out)[None])
    assert back.dtype == np.float32 and back.shape == (1, 4)
    np.testing.assert_allclose(back[0], box, atol=1 / lb.scale + 1)


@pytest.mark.parametrize(("h", "w"), [(300, 120), (120, 300)], ids=["portrait", "landscape"])
def test_letterbox_pads_borders_with_114_and_centres_the_image(h: int, w: int) -> None:
    out, lb = letterbox(np.zeros((h, w, 3), np.uint8), 64)
    assert PAD_VALUE == 114
    if h > w:
        assert lb.pad_y == 0 and lb.pad_x == (64 - round(w * lb.scale)) // 2 > 0
        assert (out[:, 0] == 114).all() and (out[:, -1] == 114).all()
    else:
        assert lb.pad_x == 0 and lb.pad_y == (64 - round(h * lb.scale)) // 2 > 0
        assert (out[0] == 114).all() and (out[-1] == 114).all()
    assert (out[lb.pad_y:lb.pad_y + 5, lb.pad_x:lb.pad_x + 5] == 0).all()


def test_letterbox_custom_pad_value_and_rectangular_size() -> None:
    out, lb = letterbox(np.zeros((10, 10, 3), np.uint8), (20, 40), pad_value=7)
    assert out.shape == (20, 40, 3) and lb.size == (20, 40)
    assert (lb.scale, lb.pad_x, lb.pad_y) == (2.0, 10, 0)
    assert (out[:, :10] == 7).all() and (out[:, 10:30] == 0).all() and (out[:, 30:] == 7).all()


def test_boxes_to_input_inverts_boxes_to_original_for_in_image_boxes() -> None:
    _, lb = letterbox(_noise(300, 120), (64, 96))
    boxes = np.array([[0, 0, 120, 300], [10.5, 20.25, 60, 299], [30, 40, 31, 41]], np.float32)
    np.testing.assert_allclose(lb.boxes_to_original(lb.boxes_to_input(boxes)), boxes, atol=1e-3)
    inp = np.array([[lb.pad_x, lb.pad_y, lb.pad_x + 5, lb.pad_y + 9]], np.float32)
    np.testing.assert_allclose(lb.boxes_to_input(lb.boxes_to_original(inp)), inp, atol=1e-3)


def test_boxes_to_original_clips_to_image_and_accepts_no_boxes() -> None:
    _, lb = letterbox(_noise(120, 300), 64)
    clipped = lb.boxes_to_original(np.array([[-50, -50, 500, 500]], np.float32))
    np.testing.assert_array_equal(clipped, [[0, 0, 300, 120]])
    for empty in (np.zeros((0, 4), np.float32), []):
        out = lb.boxes_to_original(empty)
        assert out.shape == (0, 4) and out.dtype == np.float32
        assert lb.boxes_to_input(empty).shape == (0, 4)


def test_letterbox_of_image_already_the_right_size_is_unchanged() -> None:
    image = _noise(48, 64)
    out, lb = letterbox(image, (48, 64))
    np.testing.assert_array_equal(out, image)
    assert (lb.scale, lb.pad_x, lb.pad_y) == (1.0, 0, 0)


def test_letterbox_to_dict_is_json_and_round_trips() -> None:
    _, lb = letterbox(_noise(300, 120), 64)
    data = json.loads(json.dumps(lb.to_dict()))
    assert data["size"] == [64, 64] and data["width"] == 120 and data["height"] == 300
    assert Letterbox.from_dict(data) == lb


def test_letterbox_rejects_non_rgb_uint8_input() -> None:
    with pytest.raises(ValueError, match="load_image"):
        letterbox(np.zeros((10, 10), np.uint8), 32)
    with pytest.raises(ValueError, match="load_image"):
        letterbox(np.zeros((10, 10, 3), np.float32), 32)


def test_load_then_letterbox_from_encoded_bytes() -> None:
    buf = io.BytesIO()
    Image.fromarray(_noise(30, 90)).save(buf, format="PNG")
    out, lb = letterbox(load_image(buf.getvalue()), 32)
    assert out.shape == (32, 32, 3) and (lb.width, lb.height) == (90, 30)


def test_one_lazily_opened_pil_image_decodes_from_several_threads_at_once():
    """The predict pipeline's workers may get the same PIL object twice (``[img] * 2``)."""
    from concurrent.futures import ThreadPoolExecutor

    from vision_tasks.imaging import load_image

    buf = io.BytesIO()
    Image.fromarray(_noise(128, 128, seed=3)).save(buf, "PNG")
    want = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    for _ in range(30):
        img = Image.open(io.BytesIO(buf.getvalue()))  # not loaded yet
        with ThreadPoolExecutor(4) as pool:
            for got in pool.map(load_image, [img] * 4):
                np.testing.assert_array_equal(got, want)
