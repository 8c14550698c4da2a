"""A test photo with an embedded colour profile that is far from sRGB (used by
tests/test_icc.py and by the JavaScript fixtures, js/test/make_fixtures.py).

The profile is lcms2's sRGB with its red and blue colorants swapped and a gamma 1.8 tone
curve: a decoder that converts to sRGB turns the stored red into blue and lightens the mid
tones, one that ignores the profile keeps the stored values, so the two differ by up to
about 200 levels.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

_GAMMA_1_8 = b"curv" + bytes(4) + struct.pack(">IH", 1, round(1.8 * 256)) + bytes(2)


def swapped_profile() -> bytes:
    """ICC bytes: sRGB primaries with red and blue swapped, gamma 1.8, profile ID cleared."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", data, 128)
    tags = {bytes(data[132 + 12 * k:136 + 12 * k]): 132 + 12 * k for k in range(count)}
    red, blue = tags[b"rXYZ"], tags[b"bXYZ"]
    data[red + 4:red + 12], data[blue + 4:blue + 12] = data[blue + 4:blue + 12], data[red + 4:red + 12]
    curve_at = len(data)
    data += _GAMMA_1_8
    for trc in (b"rTRC", b"gTRC", b"bTRC"):
        struct.pack_into(">II", data, tags[trc] + 4, curve_at, len(_GAMMA_1_8))
    struct.pack_into(">I", data, 0, len(data))
    data[84:100] = bytes(16)  # the MD5 profile ID no longer holds: 0 means "not computed"
    return bytes(data)


def photo_pixels(width: int = 96, height: int = 72) -> np.ndarray:
    """``uint8 [height, width, 3]``: smooth colour ramps with a few solid shapes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([255 * x / (width - 1), 255 * y / (height - 1),
                      255 * (1 - x / (width - 1))], axis=-1)
    image[height // 4:height // 2, width // 5:width // 2] = (220, 40, 30)
    image[height // 2:height * 7 // 8, width * 3 // 5:width * 9 // 10] = (30, 60, 200)
    return np.round(image).astype(np.uint8)


def write_icc_photo(path: Path, pixels: np.ndarray | None = None, quality: int = 95) -> Path:
    """Saves ``pixels`` (default :func:`photo_pixels`) as a JPEG (4:4:4, so decoders agree on
    the chroma) or PNG (by ``path``'s suffix) carrying :func:`swapped_profile`."""
    image = Image.fromarray(photo_pixels() if pixels is None else pixels)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, quality=quality, subsampling=0, icc_profile=swapped_profile())
    else:
        image.save(path, icc_profile=swapped_profile())
    return path
