"""Embedded colour (ICC) profiles: the product's one rule is that decoded pixels are sRGB.

An image whose file carries an RGB ICC profile (JPEG APP2 ``ICC_PROFILE``, PNG ``iCCP``, and
whatever else Pillow reads into ``info["icc_profile"]``) is converted from that profile to
sRGB (relative colorimetric, littleCMS 2), in training, evaluation and the runtime alike, as
browsers do for ``<img>``, canvas and ``createImageBitmap`` and as sharp does in Node: the
JavaScript package gives the same pixels to within a level or two (lcms2 and Chromium's
skcms differ by rounding).

Kept as stored: files without a profile; profiles that are sRGB already (one that moves no
colour of a probe grid by more than :data:`SRGB_TOLERANCE` levels: the sRGB profiles cameras
and editors embed, so the common case costs no conversion); gray and CMYK profiles; and
profiles lcms2 cannot read (ignored, as browsers ignore them).

Imports only numpy, Pillow and the standard library: torch-free, like
:mod:`vision_tasks.imaging`.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageCms

__all__ = ["SRGB_TOLERANCE", "to_srgb"]

SRGB_TOLERANCE = 1
"""Levels (of 255) by which a profile's transform may move a probe colour and still count as
sRGB (no conversion)."""

_SRGB = ImageCms.createProfile("sRGB")
_PROBE_LEVELS = np.linspace(0, 255, 18).round().astype(np.uint8)


def _probe() -> np.ndarray:
    """``uint8 [1, 18**3 + 256, 3]``: a colour grid and the gray ramp."""
    grid = np.stack(np.meshgrid(_PROBE_LEVELS, _PROBE_LEVELS, _PROBE_LEVELS, indexing="ij"), -1)
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    return np.concatenate([grid.reshape(-1, 3), ramp])[None]


@functools.lru_cache(maxsize=32)
def _transform(profile: bytes) -> ImageCms.ImageCmsTransform | None:
    """The RGB -> sRGB transform of ``profile``; None where the pixels are kept (see module)."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        if source.profile.xcolor_space.strip() != "RGB":
            return None
        transform = ImageCms.buildTransform(source, _SRGB, "RGB", "RGB",
                                            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None
    probe = _probe()
    moved = np.asarray(transform.apply(Image.fromarray(probe)), dtype=np.int16) - probe
    return transform if np.abs(moved).max() > SRGB_TOLERANCE else None


def to_srgb(image: np.ndarray, profile: bytes | None) -> np.ndarray:
    """``image`` (``uint8 [H, W, 3]`` RGB as stored in a file whose ICC profile is
    ``profile``) in sRGB: a new array where converted, else ``image`` itself."""
    if not profile:
        return image
    transform = _transform(bytes(profile))
    if transform is None:
        return image
    converted = transform.apply(Image.fromarray(np.ascontiguousarray(image)))
    return np.asarray(converted, dtype=np.uint8).copy()
