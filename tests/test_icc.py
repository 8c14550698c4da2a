"""Embedded ICC profiles: decoded pixels are converted to sRGB (vision_tasks.icc), on the
OpenCV fast path and the Pillow path alike, in load_image (training, evaluation) and
load_letterboxed (the runtime)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from icc_photo import photo_pixels, swapped_profile, write_icc_photo
from PIL import Image, ImageCms

from vision_tasks import fast_decode
from vision_tasks.imaging import letterbox, load_image, load_letterboxed


def stored_pixels(path: Path) -> np.ndarray:
    """The values as stored in the file (profile ignored)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def lcms_srgb(path: Path) -> np.ndarray:
    """The file converted to sRGB by Pillow's ImageCms directly."""
    with Image.open(path) as im:
        source = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        return np.asarray(ImageCms.profileToProfile(
            im.convert("RGB"), source, ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_an_embedded_profile_is_converted_to_srgb(tmp_path: Path, suffix: str) -> None:
    path = write_icc_photo(tmp_path / f"photo{suffix}")
    assert fast_decode.sniff(path.read_bytes()).icc == swapped_profile()  # the OpenCV path
    got = load_image(path)
    assert np.array_equal(got, lcms_srgb(path))
    # the profile swaps red and blue: stored red comes out blue
    assert np.abs(got.astype(int) - stored_pixels(path)).max() > 150
    assert np.array_equal(load_image(path.read_bytes()), got)


def test_the_pillow_path_and_the_runtime_input_convert_the_same(tmp_path: Path) -> None:
    path = write_icc_photo(tmp_path / "photo.jpg")
    with Image.open(path) as im:
        from_pil = load_image(im)  # a PIL image goes through Pillow, never OpenCV
    assert np.array_equal(from_pil, load_image(path))
    inputs, lb, original = load_letterboxed(path, 64, keep_original=True)
    expected, expected_lb = letterbox(load_image(path), 64)
    assert np.array_equal(inputs, expected) and lb == expected_lb
    assert np.array_equal(original, from_pil)
    reduced, _, _ = load_letterboxed(write_icc_photo(tmp_path / "big.jpg", np.kron(
        photo_pixels(), np.ones((8, 8, 1), np.uint8))), 32, reduce=True)
    assert np.abs(reduced.astype(int) - letterbox(load_image(tmp_path / "big.jpg"), 32)[0]).mean() < 3


@pytest.mark.parametrize("profile", [
    ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),  # sRGB already
    b"not an ICC profile at all",  # unreadable: ignored, as browsers do
])
def test_srgb_and_unreadable_profiles_keep_the_stored_pixels(tmp_path: Path, profile: bytes) -> None:
    path = tmp_path / "photo.jpg"
    Image.fromarray(photo_pixels()).save(path, quality=95, icc_profile=profile)
    assert np.array_equal(load_image(path), stored_pixels(path))


def test_a_gray_image_without_a_profile_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(photo_pixels()[:, :, 0]).save(path)
    assert np.array_equal(load_image(path), np.repeat(photo_pixels()[:, :, :1], 3, axis=2))


def test_a_png_profile_that_inflates_past_the_limit_is_left_to_pillow(tmp_path: Path) -> None:
    path = write_icc_photo(tmp_path / "photo.png")
    data = path.read_bytes()
    at = data.index(b"iCCP") - 4
    length = int.from_bytes(data[at:at + 4], "big")
    body = b"icc\x00\x00" + zlib.compress(bytes(fast_decode._ICC_MAX_BYTES + 1))
    chunk = len(body).to_bytes(4, "big") + b"iCCP" + body
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    assert fast_decode.sniff(data) is not None
    assert fast_decode.sniff(data[:at] + chunk + data[at + 12 + length:]) is None
