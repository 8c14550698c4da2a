"""Tests for the OpenCV fast path of vision_tasks.imaging (vision_tasks.fast_decode) and for
decode + letterbox in one step, reduced JPEG decoding included."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testkit import assert_rgb_uint8 as _assert_rgb_uint8
from testkit import noise as _noise
from testkit import save as _save

from vision_tasks import fast_decode, imaging
from vision_tasks.imaging import (
    PAD_VALUE,
    REDUCE_MARGIN,
    ImageError,
    letterbox,
    load_image,
    load_letterboxed,
)

# --- the OpenCV fast path ---------------------------------------------------------------------
# load_image sends complete 8-bit PNGs and 8-bit gray / colour JPEGs to OpenCV and everything
# else to Pillow. Each test checks which path a file takes (fast_decode.sniff) and compares with
# the Pillow path (imaging._pil_decode), which is what load_image did for every file before.

JPEG_TOLERANCE = 1
"""Largest per-pixel difference allowed between OpenCV's and Pillow's decode of one JPEG (both
use libjpeg-turbo at its defaults; with the pinned builds they are identical)."""


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    return imaging._pil_decode(data, "<bytes>")


def _png_variants() -> dict[str, bytes]:
    rgb = Image.fromarray(_noise(37, 53))
    rgba = Image.fromarray(np.dstack([_noise(37, 53), _noise(37, 53, 1)[:, :, 0]]), "RGBA")
    return {
        "rgb": _encode(rgb, "PNG"),
        "rgb_transparent_colour": _encode(rgb, "PNG", transparency=(1, 2, 3)),
        "rgba": _encode(rgba, "PNG"),
        "gray": _encode(rgb.convert("L"), "PNG"),
        "gray_transparent": _encode(rgb.convert("L"), "PNG", transparency=5),
        "gray_alpha": _encode(rgba.convert("LA"), "PNG"),
        "bilevel": _encode(rgb.convert("1"), "PNG"),
        "palette": _encode(rgb.quantize(colors=200), "PNG"),
        "palette_transparent": _encode(rgb.quantize(colors=16), "PNG", transparency=3),
        "palette_4bit": _encode(rgb.quantize(colors=16), "PNG", bits=4),
        "palette_2bit": _encode(rgb.quantize(colors=4), "PNG", bits=2),
    }


@pytest.mark.parametrize("kind", sorted(_png_variants()))
def test_fast_path_png_gives_exactly_pillows_pixels(kind: str) -> None:
    data = _png_variants()[kind]
    assert fast_decode.sniff(data) is not None, "this PNG should take the OpenCV path"
    fast = load_image(data)
    _assert_rgb_uint8(fast, 37, 53)
    np.testing.assert_array_equal(fast, _pillow(data))


@pytest.mark.parametrize("options", [
    {"quality": 90}, {"quality": 75, "subsampling": 0}, {"quality": 95, "progressive": True},
    {"quality": 60, "subsampling": 1}], ids=["420", "444", "progressive", "422"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_fast_path_jpeg_matches_pillow_within_tolerance(options: dict, mode: str) -> None:
    data = _encode(Image.fromarray(_noise(61, 83)).convert(mode), "JPEG", **options)
    assert fast_decode.sniff(data) is not None, "this JPEG should take the OpenCV path"
    fast = load_image(data)
    _assert_rgb_uint8(fast, 61, 83)
    diff = np.abs(fast.astype(int) - _pillow(data))
    assert diff.max() <= JPEG_TOLERANCE
    if mode == "L":
        assert (fast[:, :, 0] == fast[:, :, 1]).all() and (fast[:, :, 1] == fast[:, :, 2]).all()


def _colour_bars(band: int = 16) -> np.ndarray:
    """Red, green, blue and white bands, ``band`` px wide, 64 px tall: a channel-order check."""
    bars = np.zeros((64, 4 * band, 3), np.uint8)
    for i, colour in enumerate(BAR_COLOURS):
        bars[:, band * i:band * (i + 1)] = colour
    return bars


BAR_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]


def _bar_centres(image: np.ndarray) -> list[np.ndarray]:
    """The colour at the middle of each of the four bands, on the middle row."""
    row = image[image.shape[0] // 2]
    return [band[len(band) // 2].astype(int) for band in np.array_split(row, 4)]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_fast_path_keeps_rgb_channel_order(fmt: str, monkeypatch) -> None:
    options = {"quality": 95} if fmt == "JPEG" else {}
    data = _encode(Image.fromarray(_colour_bars(64)), fmt, **options)  # 256 x 64
    assert fast_decode.sniff(data) is not None
    outputs = [load_image(data), load_letterboxed(data, (64, 256))[0]]
    if fmt == "JPEG":
        factors = []
        decode = fast_decode.cv2_decode
        monkeypatch.setattr(fast_decode, "cv2_decode",
                            lambda d, h, f: factors.append(f) or decode(d, h, f))
        outputs.append(load_letterboxed(data, (4, 16), reduce=True)[0])  # from a 1/4 decode
        assert factors == [4]
    for out in outputs:
        for centre, expected in zip(_bar_centres(out), BAR_COLOURS, strict=True):
            assert np.abs(centre - expected).max() <= 16, (_bar_centres(out), out.shape)


def _oriented_jpeg(pixels: np.ndarray, orientation: int, big_endian: bool = False,
                   quality: int = 95) -> bytes:
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = orientation
    if big_endian:
        exif.endian = ">"
    return _encode(img, "JPEG", exif=exif.tobytes(), quality=quality)


@pytest.mark.parametrize("big_endian", [False, True], ids=["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_path_turns_every_exif_orientation_like_pillow(orientation: int, big_endian: bool) -> None:
    data = _oriented_jpeg(_noise(40, 60), orientation, big_endian)
    header = fast_decode.sniff(data)
    assert header is not None and header.orientation == orientation
    fast = load_image(data)
    _assert_rgb_uint8(fast, *((60, 40) if orientation >= 5 else (40, 60)))
    assert np.abs(fast.astype(int) - _pillow(data)).max() <= JPEG_TOLERANCE
    out, lb, _ = load_letterboxed(data, (48, 32))
    ref, ref_lb = letterbox(_pillow(data), (48, 32))
    assert lb == ref_lb and np.abs(out.astype(int) - ref).max() <= JPEG_TOLERANCE


def test_orientation_6_from_the_fast_path_is_upright() -> None:
    upright = _colour_bars()  # red band on the left
    stored = np.rot90(upright, k=1)  # as a camera held sideways stores it: red at the bottom
    data = _oriented_jpeg(np.ascontiguousarray(stored), 6)
    assert fast_decode.sniff(data) is not None
    out = load_image(data)
    assert out.shape == (64, 64, 3)
    assert np.abs(out[32, 8].astype(int) - (255, 0, 0)).max() <= 16  # red on the left again
    assert np.abs(out[32, 56].astype(int) - (255, 255, 255)).max() <= 16


def test_files_the_fast_path_is_unsure_of_go_to_pillow(tmp_path: Path) -> None:
    img = Image.fromarray(_noise())
    exif = img.getexif()
    exif[0x0112] = 6
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    deep = Image.fromarray(np.arange(40 * 60, dtype=np.uint16).reshape(40, 60) * 20)
    pillow_only = {
        "jpeg_xmp_orientation": (_encode(img, "JPEG", xmp=xmp), (60, 40)),
        "png_exif_orientation": (_encode(img, "PNG", exif=exif.tobytes()), (60, 40)),
        "cmyk_jpeg": (_encode(img.convert("CMYK"), "JPEG"), (40, 60)),
        "16bit_png": (_encode(deep, "PNG"), (40, 60)),
        "bytes_after_jpeg_end": (_encode(img, "JPEG") + b"\0" * 10, (40, 60)),
        "bmp": (_encode(img, "BMP"), (40, 60)),
    }
    for kind, (data, shape) in pillow_only.items():
        assert fast_decode.sniff(data) is None, kind
        out = load_image(data)
        _assert_rgb_uint8(out, *shape)
        np.testing.assert_array_equal(out, _pillow(data))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload))


def test_png_metadata_that_may_turn_the_image_sends_it_to_pillow() -> None:
    from PIL import PngImagePlugin

    pixels = _noise()
    img = Image.fromarray(pixels)
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>').decode()
    compressed_xmp = PngImagePlugin.PngInfo()
    compressed_xmp.add_itxt("XML:com.adobe.xmp", xmp, zip=True)
    plain = _encode(img, "PNG")
    exif = img.getexif()
    exif[0x0112] = 8
    exif_after_pixels = plain[:-12] + _png_chunk(b"eXIf", exif.tobytes()) + plain[-12:]
    for data, shape in [(_encode(img, "PNG", pnginfo=compressed_xmp), (60, 40)),
                        (exif_after_pixels, (60, 40))]:
        assert fast_decode.sniff(data) is None
        out = load_image(data)
        assert out.shape == (*shape, 3)
        np.testing.assert_array_equal(out, _pillow(data))
    note = PngImagePlugin.PngInfo()
    note.add_text("Software", "anything")  # ordinary text keeps the fast path
    data = _encode(img, "PNG", pnginfo=note)
    assert fast_decode.sniff(data) is not None
    np.testing.assert_array_equal(load_image(data), pixels)


def test_truncated_png_gives_pillows_error(tmp_path: Path) -> None:
    data = _encode(Image.fromarray(_noise(64, 64)), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    assert fast_decode.sniff(cut.read_bytes()) is None
    with pytest.raises(ImageError, match="cut.png: cannot decode image") as info:
        load_image(cut)
    assert "\n" not in str(info.value)
    with pytest.raises(ImageError, match="cut.png: cannot decode image"):
        load_letterboxed(cut, 32, reduce=True)


def test_load_letterboxed_errors_match_load_image(tmp_path: Path) -> None:
    full = _save(Image.fromarray(_noise(128, 128)), tmp_path / "full.jpg", quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:3000])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image\n")
    for name in ("cut.jpg", "empty.jpg", "notes.jpg", "missing.jpg"):
        with pytest.raises(ImageError) as expected:
            load_image(tmp_path / name)
        for reduce in (False, True):
            with pytest.raises(ImageError) as got:
                load_letterboxed(tmp_path / name, 16, reduce=reduce)
            assert str(got.value) == str(expected.value)
    with pytest.raises(ImageError, match="<bytes>: empty data"):
        load_letterboxed(b"", 16, reduce=True)


def test_decompression_bomb_check_still_applies_to_fast_path_files(monkeypatch) -> None:
    data = _encode(Image.fromarray(_noise()), "JPEG")
    assert fast_decode.sniff(data) is not None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    assert fast_decode.sniff(data) is None
    with pytest.raises(ImageError, match="<bytes>: image too large"):
        load_letterboxed(data, 32, reduce=True)


# --- load_letterboxed -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, (48, 80), (40, 60)])
def test_load_letterboxed_is_exactly_load_then_letterbox(tmp_path: Path, size) -> None:
    sources = [
        _save(Image.fromarray(_noise(40, 60)), tmp_path / "a.png"),
        _save(Image.fromarray(_noise(300, 120)), tmp_path / "b.jpg", quality=90),
        _oriented_jpeg(_noise(120, 300), 8),
        Image.fromarray(_noise(50, 70)),
        _noise(33, 44),
        _save(Image.fromarray(_noise(40, 60)).convert("CMYK"), tmp_path / "c.jpg"),
    ]
    for source in sources:
        out, lb, original = load_letterboxed(source, size, pad_value=7, keep_original=True)
        expected, expected_lb = letterbox(load_image(source), size, pad_value=7)
        np.testing.assert_array_equal(out, expected)
        assert lb == expected_lb
        np.testing.assert_array_equal(original, load_image(source))
        assert out.flags.c_contiguous and out.flags.writeable and not np.shares_memory(out, original)
        assert load_letterboxed(source, size, pad_value=7)[2] is None


def _scene_jpeg(size: int = 512, seed: int = 3, orientation: int = 1) -> bytes:
    """A synthetic-shapes scene (the product's own data) as a large JPEG."""
    from vision_tasks.data.synth import render_scene

    image, _ = render_scene(np.random.default_rng(seed), size, 3)
    return _oriented_jpeg(image, orientation, quality=95)


REDUCED_MEAN_TOLERANCE = 1.5
"""Largest mean absolute difference (grey levels, whole model input) allowed between the reduced
decode and the full decode of one synthetic scene; measured about 0.9 (see RESULTS.md for
photographs, where it is larger)."""


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_reduced_decode_is_close_to_full_decode_and_maps_boxes_the_same(monkeypatch,
                                                                         orientation) -> None:
    data = _scene_jpeg(512, orientation=orientation)
    factors = []
    decode = fast_decode.cv2_decode
    monkeypatch.setattr(fast_decode, "cv2_decode",
                        lambda d, h, f: factors.append(f) or decode(d, h, f))
    full, full_lb = letterbox(load_image(data), 64)
    out, lb, _ = load_letterboxed(data, 64, reduce=True)
    assert factors[-1] == 2  # 512 px at 1/2 is 256 = REDUCE_MARGIN x 64
    assert lb == full_lb and (lb.width, lb.height) == (512, 512)
    diff = np.abs(out.astype(int) - full)
    assert diff.mean() <= REDUCED_MEAN_TOLERANCE
    assert np.percentile(diff, 99) <= 16


def test_reduced_decode_keeps_the_letterbox_of_the_full_image_for_odd_sizes(monkeypatch) -> None:
    from vision_tasks.data.synth import render_scene

    image, _ = render_scene(np.random.default_rng(5), 1000, 2)
    data = _oriented_jpeg(np.ascontiguousarray(image[:997, :613]), 1)  # odd sides: ceil in DCT scaling
    full, full_lb = letterbox(load_image(data), (40, 56))
    out, lb, _ = load_letterboxed(data, (40, 56), reduce=True)
    assert imaging._reduction(997, 613, 40, 56) == 2 ** int(np.log2(997 // (REDUCE_MARGIN * 40)))
    assert lb == full_lb and out.shape == full.shape
    assert np.abs(out.astype(int) - full).mean() <= 2 * REDUCED_MEAN_TOLERANCE
    pad = np.ones(full.shape[:2], bool)
    pad[lb.pad_y:lb.pad_y + round(997 * lb.scale), lb.pad_x:lb.pad_x + round(613 * lb.scale)] = False
    assert (out[pad] == PAD_VALUE).all() and (full[pad] == PAD_VALUE).all()


def test_reduced_decode_only_when_the_image_is_much_larger_than_the_input() -> None:
    assert imaging._reduction(480, 640, 64, 64) == 2  # resized to 64 x 48; 1/2 is 240 x 320
    assert imaging._reduction(480, 640, 32, 32) == 4
    assert imaging._reduction(3000, 4000, 64, 64) == 8
    assert imaging._reduction(480, 640, 128, 128) == 1  # 1/2 would be under 4 x 128 wide
    assert imaging._reduction(64, 64, 64, 64) == 1
    png = _encode(Image.fromarray(_noise(512, 512)), "PNG")  # PNG has no reduced decode
    np.testing.assert_array_equal(load_letterboxed(png, 32, reduce=True)[0],
                                  letterbox(load_image(png), 32)[0])


def test_reduced_decode_with_keep_original_returns_the_full_image() -> None:
    data = _scene_jpeg(512)
    out, lb, original = load_letterboxed(data, 64, reduce=True, keep_original=True)
    np.testing.assert_array_equal(original, load_image(data))
    np.testing.assert_array_equal(out, load_letterboxed(data, 64, reduce=True)[0])
