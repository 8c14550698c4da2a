"""The OpenCV fast path of :func:`vision_tasks.imaging.load_image`.

PNG is lossless, and Pillow and OpenCV both decode JPEG with libjpeg-turbo at its defaults
(accurate integer IDCT, fancy upsampling), so for the files :func:`sniff` accepts OpenCV
returns Pillow's pixels while skipping Pillow's image objects and copies. A file is only
sent to OpenCV when its header shows it is one of those; anything else, or anything odd,
goes to Pillow (in :mod:`vision_tasks.imaging`, which owns the semantics and the errors).

Imports only numpy, Pillow (its size limit), OpenCV and the standard library: torch-free,
like :mod:`vision_tasks.imaging`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk type and its CRC: the last 8 bytes of a whole PNG
# PNG colour type -> bit depths OpenCV expands to Pillow's RGB values (gray, RGB, palette,
# gray + alpha, RGBA; 16-bit samples are rounded differently, so they go to Pillow).
_PNG_DEPTHS = {0: (1, 2, 4, 8), 2: (8,), 3: (1, 2, 4, 8), 4: (8,), 6: (8,)}
# Chunks that Pillow may read an orientation from (EXIF; XMP or EXIF in a text chunk, named by
# its keyword), and animation (APNG): files with any of them go to Pillow.
_PNG_PILLOW_CHUNKS = frozenset({b"eXIf", b"acTL"})
_PNG_TEXT_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt"})
_PNG_PILLOW_TEXT = (b"Raw profile type exif\x00", b"XML:com.adobe.xmp\x00")
_JPEG_SOF = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman-coded frames
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # markers without a length field
_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
_ICC_APP2 = b"ICC_PROFILE\x00"  # then the chunk's number and the count, from 1
_ICC_MAX_BYTES = 1 << 24  # the largest PNG iCCP profile inflated here (16 MiB)
_COLOR_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10 decodes straight to RGB
_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
          8: cv2.IMREAD_REDUCED_COLOR_8}
if _COLOR_RGB is not None:
    _FLAGS = {k: (v & ~cv2.IMREAD_COLOR) | _COLOR_RGB for k, v in _FLAGS.items()}
_FLAGS = {k: v | cv2.IMREAD_IGNORE_ORIENTATION for k, v in _FLAGS.items()}  # see upright


@dataclass(frozen=True)
class Header:
    """What :func:`sniff` read from a PNG or JPEG header."""

    jpeg: bool
    width: int  # as stored, before the EXIF orientation
    height: int
    orientation: int  # EXIF orientation, 1 (upright) to 8
    icc: bytes | None = None  # the embedded ICC profile (vision_tasks.icc converts to sRGB)


def sniff(data: bytes) -> Header | None:
    """The header of a file that OpenCV decodes to exactly Pillow's pixels, else None.

    That is a complete (ends with IEND / EOI) PNG of a bit depth in ``_PNG_DEPTHS``, not
    animated and without EXIF or XMP, or a complete 8-bit JPEG, baseline or
    progressive, gray or YCbCr / RGB (not CMYK), whose orientation, if any, is in one EXIF
    block (XMP orientation goes to Pillow). The image must also pass Pillow's decompression
    bomb check without a warning, so that oversized files still get Pillow's warning or error.
    An embedded ICC profile comes back in ``Header.icc``: OpenCV returns the stored values,
    and the caller converts them (:func:`vision_tasks.icc.to_srgb`), as for Pillow's.
    """
    if data.startswith(_PNG_SIGNATURE):
        header = _sniff_png(data)
    elif data.startswith(b"\xff\xd8"):
        try:
            header = _sniff_jpeg(data)
        except (IndexError, struct.error):
            return None
    else:
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if header is None or (limit is not None and header.width * header.height > limit):
        return None
    return header


def _sniff_png(data: bytes) -> Header | None:
    if len(data) < 45 or data[12:16] != b"IHDR" or not data.endswith(_PNG_END):
        return None
    width, height, depth, colour, compression, filtering, interlace = \
        struct.unpack(">IIBBBBB", data[16:29])
    if (width < 1 or height < 1 or depth not in _PNG_DEPTHS.get(colour, ())
            or compression or filtering or interlace > 1):
        return None
    i, end = 8, len(data) - 12  # walk the chunks (Pillow also reads those after the pixels)
    icc = None
    while i < end:
        length, kind = struct.unpack_from(">I4s", data, i)
        if kind in _PNG_PILLOW_CHUNKS or (kind in _PNG_TEXT_CHUNKS and data.startswith(
                _PNG_PILLOW_TEXT, i + 8, i + 8 + length)):
            return None
        if kind == b"iCCP":  # profile name, NUL, compression method 0, zlib stream
            body = data[i + 8:i + 8 + length]
            name_end = body.find(b"\x00")
            if icc is not None or not 0 < name_end < 80 or body[name_end + 1:name_end + 2] != b"\x00":
                return None
            try:  # at most _ICC_MAX_BYTES: a larger (or bomb) profile goes to Pillow's limits
                inflate = zlib.decompressobj()
                icc = inflate.decompress(body[name_end + 2:], _ICC_MAX_BYTES)
            except zlib.error:
                return None
            if inflate.unconsumed_tail:
                return None
        i += 12 + length
    if i != end:
        return None
    return Header(False, width, height, 1, icc)


def _sniff_jpeg(data: bytes) -> Header | None:
    """Walk the marker segments up to the first scan (a few, at the start of the file)."""
    if not data.endswith(b"\xff\xd9"):
        return None  # truncated, or bytes after the image: Pillow decides
    frame, exif, i, end = None, None, 2, len(data)
    icc: dict[int, bytes] = {}
    while i + 4 <= end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        segment = data[i + 4:i + 2 + length]
        if length < 2 or len(segment) != length - 2:
            return None
        if marker == 0xDA:  # start of scan: the header is over
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header
            if frame is not None or marker not in _JPEG_SOF:
                return None
            frame = segment
        elif marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            if exif is not None:
                return None  # Pillow joins several EXIF blocks; rare, so Pillow reads them
            exif = segment[6:]
        elif marker == 0xE1 and segment.startswith(_XMP_APP1) and b"tiff:Orientation" in segment:
            return None
        elif marker == 0xE2 and segment.startswith(_ICC_APP2) and len(segment) > 14:
            icc[segment[12]] = segment[14:]
        i += 2 + length
    else:
        return None
    if frame is None or len(frame) < 6:
        return None
    precision, height, width, components = struct.unpack(">BHHB", frame[:6])
    if precision != 8 or components not in (1, 3) or width < 1 or height < 1:
        return None
    orientation = 1 if exif is None else _exif_orientation(exif)
    if orientation is None or (icc and sorted(icc) != list(range(1, len(icc) + 1))):
        return None  # no orientation we are sure of, or ICC chunks missing: Pillow decides
    return Header(True, width, height, orientation, b"".join(icc[k] for k in sorted(icc)) or None)


def _exif_orientation(exif: bytes) -> int | None:
    """The Orientation tag (0x0112) of IFD0 in an EXIF block, 1 when absent, None when the
    block is not plain enough to be sure what Pillow reads from it."""
    while exif.startswith(b"Exif\x00\x00"):  # written twice by some software; Pillow strips it
        exif = exif[6:]
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(exif[:4])
    if order is None:
        return None
    (ifd,) = struct.unpack(order + "I", exif[4:8])
    (count,) = struct.unpack(order + "H", exif[ifd:ifd + 2])
    entries = exif[ifd + 2:ifd + 2 + 12 * count]
    if len(entries) != 12 * count:
        return None
    found = []
    for k in range(0, len(entries), 12):
        tag, kind, n = struct.unpack(order + "HHI", entries[k:k + 8])
        if tag == 0x0112:
            if kind != 3 or n != 1:  # not one SHORT
                return None
            found.append(struct.unpack(order + "H", entries[k + 8:k + 10])[0])
    if len(found) > 1:
        return None
    value = found[0] if found else 1
    return value if 1 <= value <= 8 else 1  # Pillow leaves other values upright


def cv2_decode(data: bytes, header: Header, reduce: int) -> np.ndarray | None:
    """RGB ``[h, w, 3]`` as stored (no orientation applied) at ``1 / reduce`` scale, or None
    when OpenCV fails or returns another size (the caller then goes to Pillow)."""
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS[reduce])
    except cv2.error:
        return None
    expected = (-(-header.height // reduce), -(-header.width // reduce), 3)
    if image is None or image.shape != expected or image.dtype != np.uint8:
        return None
    if _COLOR_RGB is None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` turned by its EXIF orientation as Pillow's ``exif_transpose`` does (a view)."""
    if orientation == 2:  # mirrored left-right
        return image[:, ::-1]
    if orientation == 3:  # rotated 180 degrees
        return image[::-1, ::-1]
    if orientation == 4:  # mirrored top-bottom
        return image[::-1]
    if orientation == 5:  # transposed
        return image.transpose(1, 0, 2)
    if orientation == 6:  # stored 90 degrees anticlockwise: turn it clockwise
        return image.transpose(1, 0, 2)[:, ::-1]
    if orientation == 7:  # transversed
        return image.transpose(1, 0, 2)[::-1, ::-1]
    if orientation == 8:  # stored 90 degrees clockwise: turn it anticlockwise
        return image.transpose(1, 0, 2)[::-1]
    return image
