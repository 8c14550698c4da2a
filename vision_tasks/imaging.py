"""Image decoding and letterboxing, shared by the data pipeline, export and the ONNX runtime.

Imports only numpy, Pillow, OpenCV, the standard library and its OpenCV fast path
(:mod:`vision_tasks.fast_decode`), never torch, so the torch-free runtime can embed it.
Conventions:
- an image is a ``uint8`` array of shape ``[H, W, 3]``, RGB order, C-contiguous;
- a box is ``(x1, y1, x2, y2)`` in continuous pixel coordinates: pixel column ``c`` covers
  ``[c, c + 1)``, so the box of a whole ``W x H`` image is ``(0, 0, W, H)``;
- a model input size is ``(height, width)``.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import warnings
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vision_tasks import fast_decode, icc
from vision_tasks.image_arrays import ArrayError, array_to_rgb

__all__ = ["IMAGE_SUFFIXES", "MAX_FILE_BYTES", "PAD_VALUE", "REDUCE_MARGIN", "ImageError",
           "ImageSource", "LargeImageWarning", "Letterbox", "letterbox", "load_image",
           "load_letterboxed"]

PAD_VALUE = 114
"""Grey level of the letterbox border (the ONNX contract's pad value)."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
"""File suffixes (lower case) that folder scans take for images (data sets and ``predict``)."""

MAX_FILE_BYTES = 1 << 30
"""The most bytes read from one image file (1 GiB): a larger file, or a "file" that never
ends (a link to /dev/zero), is an :class:`ImageError`, not a read that fills the memory."""

# What load_image accepts: a path, encoded bytes, a PIL image or a pixel array.
ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray

# What Pillow and its plugins raise on corrupt or unsupported data while opening or decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error,
                  Image.DecompressionBombError)
# Modes whose alpha (or palette transparency) is dropped by going through RGBA.
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA", "P")
_PIL_LOAD = threading.Lock()
# Pillow's warning for an image over PIL.Image.MAX_IMAGE_PIXELS does not name the file; ours
# (LargeImageWarning, from _pil_decode) does, so Pillow's own is silenced.
warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit",
                        category=Image.DecompressionBombWarning)
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class LargeImageWarning(UserWarning):
    """An image over ``PIL.Image.MAX_IMAGE_PIXELS`` (but under twice that, which is an
    error): it is decoded, and the warning names the file."""


class ImageError(ValueError):
    """An image that cannot be read or decoded.

    The message is one line: the file (or ``<bytes>``, ``<array>``, ``<PIL image>``), the cause
    and the fix, e.g. ``data/x.jpg: empty file (0 bytes); re-export the file or remove it``.
    """


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _decode_error(name: str, exc: BaseException) -> ImageError:
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(f"{name}: image too large ({_one_line(exc)}); downscale the file "
                          "or raise PIL.Image.MAX_IMAGE_PIXELS if you trust it")
    return ImageError(f"{name}: cannot decode image ({_one_line(exc)}); "
                      "re-export the file or remove it")


def load_image(source: ImageSource) -> np.ndarray:
    """Decode ``source`` into a ``uint8`` ``[H, W, 3]`` RGB, C-contiguous array (never a view).

    ``source`` may be a path (``str`` / ``os.PathLike``), encoded bytes (``bytes``,
    ``bytearray``, ``memoryview``), a ``PIL.Image.Image`` or a numpy array.

    Files, bytes and PIL images are fully decoded (truncated files fail here, not later) and
    turned upright by their EXIF orientation. Whole PNGs of up to 8 bits per sample (not
    animated, no EXIF / XMP) and whole 8-bit gray or colour JPEGs (orientation, if any, from
    EXIF) are decoded by OpenCV, which gives Pillow's pixels about twice as fast; every other
    file, and any file those header checks are unsure of, by Pillow. The semantics and error
    messages below hold either way. Colour handling:
    - an embedded RGB ICC profile is converted to sRGB (:mod:`vision_tasks.icc`: the rule
      the JavaScript package and browsers follow too); no profile means sRGB;
    - grayscale, palette, CMYK, YCbCr, ... are converted to RGB;
    - alpha is dropped, not composited: RGBA keeps its RGB values, LA its gray, a palette
      image with transparency its palette colours (what a model sees is the stored colour);
    - 16-bit images (modes ``I;16*`` and ``I``, clipped to 0..65535) become 8-bit by
      ``round(value / 257)``; mode ``F`` follows Pillow (values are 0..255 levels, clipped).

    Arrays may be ``[H, W]`` (gray), ``[H, W, 1]``, ``[H, W, 3]`` (taken as RGB) or
    ``[H, W, 4]`` (RGBA, alpha dropped), with dtype ``uint8``, ``uint16`` (``/ 257``, rounded),
    ``bool`` (``* 255``), float in ``[0, 1]`` (``* 255``, rounded) or any other integer type
    holding levels 0..255. Anything else is refused, never clipped into another picture: a
    float array beyond ``[0, 1]`` (e.g. 0..255 floats; :data:`~vision_tasks.image_arrays.FLOAT_SLACK` of rounding is
    allowed), NaN or infinity, integers outside 0..255, a channels-first ``[C, H, W]`` or a
    batched ``[N, H, W, C]`` array (each with the fix in its message).

    Raises:
        ImageError: the source is missing, empty, not an image, corrupt, too large, or an
            array of unsupported shape or dtype.
        TypeError: ``source`` is none of the accepted types.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, "<array>")
    if isinstance(source, Image.Image):
        return _from_pil(source, getattr(source, "filename", "") or "<PIL image>")
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode(bytes(source), "<bytes>")
    if isinstance(source, str | os.PathLike):
        name = os.fsdecode(source)
        return _decode(_read_file(name), name)
    raise TypeError(f"load_image expects a path, bytes, a PIL image or a numpy array, "
                    f"got {type(source).__name__}")


def _read_file(name: str) -> bytes:
    try:
        data = _read_all(name)
    except FileNotFoundError as exc:
        raise ImageError(f"{name}: file not found; check the path") from exc
    except IsADirectoryError as exc:
        raise ImageError(f"{name}: is a directory, not an image file; pass a file path") from exc
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or _one_line(exc)}); "
                         "check that it exists and is readable") from exc
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes); re-export the file or remove it")
    return data


def _read_all(name: str) -> bytes:
    """The bytes of the regular file ``name``, at most :data:`MAX_FILE_BYTES`, read with plain
    system calls (cheaper than ``open().read()``). Opened without blocking, so a FIFO is
    refused at once instead of waiting for a writer."""
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(name)
        kind = next((what for test, what in _FILE_KINDS if test(info.st_mode)), None)
        if kind is not None:
            raise ImageError(f"{name}: not a regular file but {kind}; pass an image file")
        size, limit = info.st_size, MAX_FILE_BYTES
        chunks: list[bytes] = []
        total = 0
        while size <= limit and total <= limit and (
                chunk := os.read(fd, size + 1 if not chunks else 1 << 20)):
            chunks.append(chunk)
            total += len(chunk)
            if len(chunks) == 1 and total == size:
                break  # the whole file in one read: the usual case
        if max(size, total) > limit:
            raise ImageError(f"{name}: more than {limit:,} bytes, the most an image file may "
                             "have here (vision_tasks.imaging.MAX_FILE_BYTES); downscale the "
                             "image, or raise that limit if you trust the file")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _decode(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise ImageError(f"{name}: empty data (0 bytes); pass the bytes of an encoded image")
    header = fast_decode.sniff(data)
    if header is not None:
        image = fast_decode.cv2_decode(data, header, 1)
        if image is not None:
            image = np.ascontiguousarray(fast_decode.upright(image, header.orientation))
            return icc.to_srgb(image, header.icc)
    return _pil_decode(data, name)


def _pil_decode(data: bytes, name: str) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not a recognised image (Pillow cannot identify the format); "
                         "check that it is an image file, or remove it") from exc
    except _DECODE_ERRORS as exc:
        raise _decode_error(name, exc) from exc
    with img:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and img.width * img.height > limit:
            warnings.warn(f"{name}: {img.width}x{img.height} pixels, more than "
                          f"PIL.Image.MAX_IMAGE_PIXELS ({limit:,}); decoding it anyway (twice "
                          "that is refused as a possible decompression bomb)", LargeImageWarning,
                          stacklevel=2)
        return _from_pil(img, name)


def _from_pil(img: Image.Image, name: str) -> np.ndarray:
    try:
        # Force the full decode so that truncated data fails here. A lazily opened image is
        # not safe to load from two threads at once (the predict pipeline's workers may get
        # the same object twice), so its first load is serialised.
        with _PIL_LOAD:
            img.load()
        img = ImageOps.exif_transpose(img)  # a transposed copy; the caller's image is untouched
        profile = img.info.get("icc_profile")
        if img.mode.startswith("I"):  # 16-bit gray: keep full depth, scaled by array_to_rgb
            arr = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        elif img.mode == "RGB":
            arr = np.asarray(img)
        elif img.mode in _ALPHA_MODES:
            arr = np.asarray(img.convert("RGBA"))[:, :, :3]
        else:
            arr = np.asarray(img.convert("RGB"))
    except _DECODE_ERRORS as exc:
        raise _decode_error(name, exc) from exc
    return icc.to_srgb(_from_array(arr, name), profile)


def _from_array(arr: np.ndarray, name: str) -> np.ndarray:
    try:
        return array_to_rgb(arr)
    except ArrayError as err:
        raise ImageError(f"{name}: {err}") from None


@dataclass(frozen=True)
class Letterbox:
    """How :func:`letterbox` mapped an original image into the model input.

    ``x_input = x_original * scale + pad_x`` and ``y_input = y_original * scale + pad_y``.
    """

    scale: float  # resize factor, original -> input pixels (same for x and y)
    pad_x: int  # left padding, input pixels
    pad_y: int  # top padding, input pixels
    width: int  # original image width, pixels
    height: int  # original image height, pixels
    size: tuple[int, int]  # model input (height, width)

    def _offset(self) -> np.ndarray:
        return np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float64)

    def boxes_to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map float ``[K, 4]`` xyxy boxes from input pixels to original-image pixels.

        Boxes are clipped to the image (``[0, width]`` for x, ``[0, height]`` for y).
        Any leading shape ``[..., 4]`` works, ``K = 0`` included. Returns float32.
        """
        b = _as_boxes(boxes)
        out = (b - self._offset()) / self.scale
        upper = np.array([self.width, self.height, self.width, self.height], dtype=np.float64)
        return np.clip(out, 0.0, upper).astype(np.float32)

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Map float ``[K, 4]`` xyxy boxes from original pixels to input pixels (no clipping).

        The inverse of :meth:`boxes_to_original` for boxes inside the image. Returns float32.
        """
        return (_as_boxes(boxes) * self.scale + self._offset()).astype(np.float32)

    def resized_size(self) -> tuple[int, int]:
        """``(height, width)`` of the resized image inside the input, before the padding."""
        _, new_w, new_h = _fit(self.height, self.width, *self.size)
        return new_h, new_w

    def paste(self, array: np.ndarray, pad_value: int = PAD_VALUE) -> np.ndarray:
        """Map an array over the original image into the input frame, as :func:`letterbox`
        maps the image: bilinear resize (``cv2.INTER_LINEAR``) to :meth:`resized_size`, then
        the border filled with ``pad_value``.

        Args:
            array: ``[height, width]`` or ``[height, width, C]`` (e.g. an object's uint8 mask),
                of a dtype OpenCV resizes (uint8, float32...).
            pad_value: value of the border.

        Returns:
            A new array ``[size[0], size[1]]`` (``[..., C]``) of ``array``'s dtype.
        """
        if array.shape[:2] != (self.height, self.width):
            raise ValueError(f"paste expects an array of the original image's size "
                             f"{self.height}x{self.width}, got shape {array.shape}")
        return _paste(array, self, *self.resized_size(), pad_value, owned=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields (``size`` as a ``[height, width]`` list)."""
        return {**asdict(self), "size": list(self.size)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Letterbox:
        """Rebuild a :class:`Letterbox` from :meth:`to_dict` output."""
        return cls(**{**data, "size": tuple(data["size"])})


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0 and b.shape[-1:] != (4,):
        b = b.reshape(0, 4)  # e.g. an empty list
    if b.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [K, 4] (x1, y1, x2, y2), got {b.shape}")
    return b


def letterbox(image: np.ndarray, size: int | tuple[int, int],
              pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` to fit ``size`` keeping its aspect ratio, centred on a padded canvas.

    Args:
        image: ``uint8`` ``[H, W, 3]`` array (as from :func:`load_image`).
        size: model input size, ``(height, width)``, or one int for a square.
        pad_value: gray level, 0..255, of the border.

    Returns:
        The ``uint8`` ``[height, width, 3]`` input (a new array) and the :class:`Letterbox`
        that maps boxes between it and ``image``. ``scale = min(height / H, width / W)``; the
        resize is bilinear (``cv2.INTER_LINEAR``) to ``(round(W * scale), round(H * scale))``;
        the padding is split evenly, the odd pixel going right / bottom.
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.size > 0):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise ValueError(f"letterbox expects a non-empty uint8 [H, W, 3] image, got {got}; "
                         "decode it with load_image first")
    in_h, in_w = _input_size(size, pad_value)
    h, w = image.shape[:2]
    return _place(image, h, w, in_h, in_w, pad_value, owned=False)


def _input_size(size: int | tuple[int, int], pad_value: int) -> tuple[int, int]:
    in_h, in_w = (int(size), int(size)) if isinstance(size, int | np.integer) else map(int, size)
    if in_h < 1 or in_w < 1:
        raise ValueError(f"letterbox size must be positive, got {size}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value must be in 0..255, got {pad_value}")
    return in_h, in_w


def _fit(h: int, w: int, in_h: int, in_w: int) -> tuple[float, int, int]:
    """Letterbox scale and resized ``(width, height)`` of an ``h x w`` image."""
    scale = min(in_h / h, in_w / w)
    return scale, min(in_w, max(1, round(w * scale))), min(in_h, max(1, round(h * scale)))


def _place(image: np.ndarray, h: int, w: int, in_h: int, in_w: int, pad_value: int,
           owned: bool) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an ``h x w`` image given as ``image``: that image, or (reduced decoding) a
    smaller decode of it, resized to the size the full image would get. ``owned``: ``image``
    is a fresh array that may be returned as it is when it needs neither resize nor border."""
    scale, new_w, new_h = _fit(h, w, in_h, in_w)
    geometry = Letterbox(scale=scale, pad_x=(in_w - new_w) // 2, pad_y=(in_h - new_h) // 2,
                         width=w, height=h, size=(in_h, in_w))
    return _paste(image, geometry, new_h, new_w, pad_value, owned), geometry


def _paste(image: np.ndarray, geometry: Letterbox, new_h: int, new_w: int, pad_value: int,
           owned: bool) -> np.ndarray:
    """``image`` resized to ``new_h x new_w`` and placed on ``geometry``'s padded canvas.
    ``owned``: ``image`` is a fresh array that may be returned as it is when it needs
    neither resize nor border."""
    in_h, in_w = geometry.size
    if image.shape[:2] != (new_h, new_w):
        image = cv2.resize(np.ascontiguousarray(image), (new_w, new_h),
                           interpolation=cv2.INTER_LINEAR)
        owned = True
    if (new_h, new_w) == (in_h, in_w) and owned and image.flags.c_contiguous:
        return image  # no border: the resized (or freshly decoded) image is the input
    out = np.full((in_h, in_w, *image.shape[2:]), pad_value, dtype=image.dtype)
    out[geometry.pad_y:geometry.pad_y + new_h, geometry.pad_x:geometry.pad_x + new_w] = image
    return out


REDUCE_MARGIN = 4
"""Reduced decoding keeps the decoded image at least this many times the resized size."""


def load_letterboxed(source: ImageSource, size: int | tuple[int, int], pad_value: int = PAD_VALUE,
                     reduce: bool = False, keep_original: bool = False,
                     ) -> tuple[np.ndarray, Letterbox, np.ndarray | None]:
    """``letterbox(load_image(source), size, pad_value)`` in one step, with fewer copies.

    With ``reduce=False`` the model input is exactly that, for every source.

    With ``reduce=True``, a JPEG file or JPEG bytes that OpenCV decodes (see
    :func:`load_image`) and that is at least ``2 * REDUCE_MARGIN`` times larger than its
    resized size along both sides is decoded by libjpeg's DCT scaling at 1/2, 1/4 or 1/8 of
    its size: the smallest of those that stays at least ``REDUCE_MARGIN`` times the resized
    size. That image is then resized, bilinear, to exactly the size the full image would get,
    and the :class:`Letterbox` is the full image's (scale, padding, width and height), so
    boxes map back to original pixels as before. EXIF orientation is applied as before. The
    pixels are not bit-identical: DCT scaling averages blocks of pixels where the bilinear
    resize of the full image samples a few, so the input is slightly smoother, and a larger
    margin does not shrink that difference (it comes from the detail the full-size resize
    aliases). Measured mean absolute difference to the full decode's input, per image: about
    1 grey level on the synthetic shapes (the tests hold a 512 px scene to 1.5); on COCO
    photographs, median 0.5 to 3.9 and up to 20 depending on the photo-to-input ratio, more
    than re-saving the photo as a quality-90 JPEG does (``benchmarks/RESULTS.md``). Hence
    off by default. Every other source is handled as with ``reduce=False``.

    Returns:
        The ``uint8`` ``[height, width, 3]`` model input (a new array), its
        :class:`Letterbox`, and with ``keep_original`` the full decoded image (as from
        :func:`load_image`; decoded a second time when the input came from a reduced
        decode), else None.

    Raises:
        ImageError, TypeError: as :func:`load_image`.
        ValueError: ``size`` or ``pad_value`` out of range.
    """
    in_h, in_w = _input_size(size, pad_value)
    if isinstance(source, bytes | bytearray | memoryview):
        name, data = "<bytes>", bytes(source)
    elif isinstance(source, str | os.PathLike):
        name = os.fsdecode(source)
        data = _read_file(name)
    else:
        original = load_image(source)
        return (*letterbox(original, (in_h, in_w), pad_value),
                original if keep_original else None)
    header = fast_decode.sniff(data) if data else None
    if header is not None:
        h, w = header.height, header.width
        if header.orientation >= 5:  # turned by a quarter: the upright image is w x h
            h, w = w, h
        factor = _reduction(h, w, in_h, in_w) if reduce and header.jpeg else 1
        image = fast_decode.cv2_decode(data, header, factor)
        if image is not None:
            upright = icc.to_srgb(fast_decode.upright(image, header.orientation), header.icc)
            original = None
            if keep_original:
                original = np.ascontiguousarray(upright) if factor == 1 else _decode(data, name)
            owned = upright is image and not (keep_original and factor == 1)
            return (*_place(upright, h, w, in_h, in_w, pad_value, owned=owned), original)
    original = _pil_decode(data, name) if data else _decode(data, name)  # _decode: empty-data error
    return (*_place(original, *original.shape[:2], in_h, in_w, pad_value,
                    owned=not keep_original), original if keep_original else None)


def _reduction(h: int, w: int, in_h: int, in_w: int) -> int:
    """The largest DCT scale-down factor (8, 4, 2, else 1) that keeps an ``h x w`` image at
    least ``REDUCE_MARGIN`` times its letterboxed size along both sides."""
    _, new_w, new_h = _fit(h, w, in_h, in_w)
    for factor in (8, 4, 2):
        if h // factor >= REDUCE_MARGIN * new_h and w // factor >= REDUCE_MARGIN * new_w:
            return factor
    return 1
