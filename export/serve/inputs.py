"""A request -> the images it carries and the options it asks for, checked; nothing here
touches a file.

A body is one image (JPEG, PNG, WebP... as bytes; any ``Content-Type`` but multipart) or a
``multipart/form-data`` body whose parts with a file name are images, a part named
``options`` a JSON object of options, and other plain fields single options. Options may
also come in the query string (``?score_threshold=0.5&top_k=3&heads=a,b``). Multipart is
parsed in memory by python-multipart's streaming parser: unlike form parsers that spool
large parts to temporary files, no byte of a request reaches the disk.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import orjson
from PIL import Image
from python_multipart.multipart import MultipartParser, parse_options_header

OPTION_NAMES = ("score_threshold", "top_k", "heads")
MAX_TOP_K = 1000


class RequestError(Exception):
    """A request the server answers with ``status`` and ``{"error": message}``.

    Attributes:
        status: the HTTP status (4xx for bad input, 503 when busy).
        kind: the error's label in ``/metrics`` (``not_image``, ``bad_option``...).
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, kind: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status
        self.kind = kind
        self.headers = headers or {}


@dataclass
class Upload:
    """One image of a request: its bytes and how answers and errors name it."""

    name: str
    data: bytes


@dataclass(frozen=True)
class PredictOptions:
    """What one request asks of the decoding (None: the server's default).

    Attributes:
        score_threshold: detections below this are left out (detect, segment heads).
        top_k: classes listed in ``top`` (classify, localize heads).
        heads: the heads of a multi-head model to answer with (None: all).
    """

    score_threshold: float | None = None
    top_k: int = 5
    heads: tuple[str, ...] | None = None


def split_body(body: bytes, content_type: str, max_images: int) -> tuple[list[Upload], dict, bool]:
    """The images and option fields of a body, and whether it was multipart.

    Raises:
        RequestError: an empty body, a malformed multipart body, no image in it, or more
            than ``max_images``.
    """
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        if not body:
            raise RequestError(400, "empty", "the request has no body; send the image's bytes "
                                             "(or multipart/form-data with image files)")
        return [Upload("<bytes>", body)], {}, False
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError(400, "bad_multipart", "multipart/form-data without a boundary; let "
                                                 "your HTTP client write the Content-Type")
    uploads, fields = _parse_multipart(body, boundary, max_images)
    if not uploads:
        raise RequestError(400, "empty", "the multipart body has no image part (a part with a "
                                         "file name); send images as files")
    return uploads, fields, True


def _parse_multipart(body: bytes, boundary: bytes, max_images: int) -> tuple[list[Upload], dict]:
    parts: list[tuple[dict[bytes, bytes], list[bytes]]] = []
    header: list[bytes] = [b"", b""]

    def begin() -> None:
        parts.append(({}, []))

    def field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def header_end() -> None:
        parts[-1][0][header[0].lower()] = header[1]
        header[:] = [b"", b""]

    def data(chunk: bytes, start: int, end: int) -> None:
        parts[-1][1].append(chunk[start:end])

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": field,
                                        "on_header_value": value, "on_header_end": header_end,
                                        "on_part_data": data})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as err:  # python-multipart's MultipartParseError and friends
        raise RequestError(400, "bad_multipart", f"malformed multipart body ({err}); let your "
                                                 "HTTP client encode the form") from None
    uploads: list[Upload] = []
    fields: dict[str, str] = {}
    for headers, chunks in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if filename is not None:
            if len(uploads) == max_images:
                raise RequestError(413, "too_many_images", f"more than {max_images} images in one "
                                   "request (--max-images); send fewer per request")
            label = filename.decode("utf-8", "replace") or f"<part {len(uploads) + 1}>"
            uploads.append(Upload(label, b"".join(chunks)))
        else:
            fields[name] = b"".join(chunks).decode("utf-8", "replace")
    return uploads, fields


def read_options(query: dict[str, str], fields: dict[str, str]) -> dict[str, str | object]:
    """Options from the query string, multipart fields and a multipart ``options`` JSON
    object, later sources winning; unknown names are a 400."""
    found: dict[str, str | object] = dict(query)
    extra = dict(fields)
    if "options" in extra:
        try:
            given = orjson.loads(extra.pop("options"))
        except orjson.JSONDecodeError as err:
            raise RequestError(400, "bad_option", f"the 'options' part is not JSON ({err}); send "
                                                  "a JSON object such as {\"top_k\": 3}") from None
        if not isinstance(given, dict):
            raise RequestError(400, "bad_option", "the 'options' part must be a JSON object, "
                                                  "such as {\"top_k\": 3}")
        extra.update(given)
    found.update(extra)
    unknown = sorted(set(found) - set(OPTION_NAMES))
    if unknown:
        raise RequestError(400, "bad_option", f"unknown option '{unknown[0]}'; the options are "
                                              f"{', '.join(OPTION_NAMES)}")
    return found


def check_options(raw: dict[str, str | object], head_names: tuple[str, ...],
                  box_task: bool) -> PredictOptions:
    """Typed options for a model with heads ``head_names`` (empty: single-task) that has
    (``box_task``) or lacks detections.

    Raises:
        RequestError: a value of the wrong type or range, a score threshold for a model
            without detections, heads of a single-task model or unknown heads.
    """
    threshold = raw.get("score_threshold")
    if threshold is not None:
        threshold = _number(threshold, "score_threshold")
        if not 0.0 <= threshold <= 1.0:
            _bad("score_threshold", f"must be in [0, 1], got {threshold}")
        if not box_task:
            _bad("score_threshold", "applies to detect and segment models; this model has no "
                                    "detections")
    top_k = raw.get("top_k", 5)
    top_k = _number(top_k, "top_k")
    if top_k != int(top_k) or not 1 <= top_k <= MAX_TOP_K:
        _bad("top_k", f"must be a whole number in [1, {MAX_TOP_K}], got {top_k:g}")
    heads = raw.get("heads")
    if heads is not None:
        if not head_names:
            _bad("heads", "applies to multi-head models; this model has one task")
        names = heads if isinstance(heads, list) else str(heads).split(",")
        names = [str(n).strip() for n in names if str(n).strip()]
        wrong = [n for n in names if n not in head_names]
        if wrong or not names:
            _bad("heads", f"'{','.join(wrong) or heads}' is not among this model's heads "
                          f"({', '.join(head_names)})")
        heads = tuple(n for n in head_names if n in names)
    return PredictOptions(threshold, int(top_k), heads)


def _number(value: str | object, name: str) -> float:
    if isinstance(value, bool):
        _bad(name, f"must be a number, got {value}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        _bad(name, f"must be a number, got '{value}'")
    if not math.isfinite(number):
        _bad(name, f"must be a finite number, got {value}")
    return number


def _bad(name: str, what: str) -> None:
    raise RequestError(400, "bad_option", f"option {name} {what}")


def check_image_header(upload: Upload, max_pixels: int) -> None:
    """Refuse, from its header alone, what is not an image Pillow knows or an image over
    ``max_pixels`` (a decompression bomb: a small file of a huge image).

    Raises:
        RequestError: 415 for data that is no known image format, 413 for too many pixels.
    """
    try:
        with Image.open(io.BytesIO(upload.data)) as img:
            width, height = img.size
    except Image.DecompressionBombError as err:
        raise RequestError(413, "too_many_pixels", f"{upload.name}: image too large ({err}); "
                           "send a smaller image") from None
    except Exception:  # UnidentifiedImageError, or any error of a format plug-in's header parser
        raise RequestError(415, "not_image", f"{upload.name}: not an image this server reads "
                           "(JPEG, PNG, WebP, BMP, TIFF, GIF); send the image file's bytes") from None
    if width * height > max_pixels:
        raise RequestError(413, "too_many_pixels", f"{upload.name}: {width}x{height} pixels, "
                           f"more than the {max_pixels:,} this server decodes (--max-pixels); "
                           "send a smaller image")
