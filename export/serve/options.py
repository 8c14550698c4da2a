"""What ``vision-tasks serve`` was asked for: one frozen value shared by the command line,
the ASGI app and the Ray Serve deployment (which ships it to every replica)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vision_tasks.errors import ConfigError

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A browser origin: scheme://host[:port], nothing after (no path, no trailing slash).
CORS_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#]+$")
"""A model's name in URLs: letters, digits, ``.``, ``_``, ``-`` (at most 64)."""


@dataclass(frozen=True)
class ServeOptions:
    """Settings of one server (every field has the command line's default).

    Attributes:
        models: model name -> ``.onnx`` path (the name is the file stem unless given as
            ``NAME=PATH``).
        host, port: where to listen (127.0.0.1: this machine only).
        device, threads, lanes: as ``vision-tasks predict`` (one onnxruntime session per model,
            ``lanes`` batches of it running at once).
        workers: image-decoding threads shared by all models.
        max_batch: the most images one inference call takes.
        max_delay_ms: how long the first image of a batch waits for others (milliseconds).
        max_queue: images admitted and not yet in a batch, per model; past it, 503.
        max_body_mb: the largest request body (MiB); past it, 413.
        max_images: images in one multipart request.
        max_pixels: the largest image (width x height) decoded; past it, 413.
        read_timeout_s: the longest a client may take to send its body (408 after).
        request_timeout_s: the longest an admitted request may wait and run (503 after).
        token: the bearer token (read from ``--token-file``), None: no auth.
        cors: origins allowed by CORS (empty: CORS off).
        graceful_timeout_s: how long SIGTERM waits for the requests in flight.
        reduced_decode: as ``vision-tasks predict --reduced-decode``.
    """

    models: dict[str, str]
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "auto"
    threads: int | None = None
    lanes: int | None = None
    workers: int | None = None
    max_batch: int = 8
    max_delay_ms: float = 5.0
    max_queue: int = 64
    max_body_mb: float = 20.0
    max_images: int = 16
    max_pixels: int = 40_000_000
    read_timeout_s: float = 30.0
    request_timeout_s: float = 60.0
    token: str | None = field(default=None, repr=False)
    cors: tuple[str, ...] = ()
    graceful_timeout_s: float = 30.0
    reduced_decode: bool = False

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("serve needs at least one MODEL.onnx; pass the files to serve")
        for name in self.models:
            if not MODEL_NAME.match(name):
                raise ConfigError(f"model name '{name}': use letters, digits, '.', '_' and '-' "
                                  "only (at most 64); pass NAME=PATH to choose one")
        for flag, value, low in (("--max-batch", self.max_batch, 1),
                                 ("--max-queue", self.max_queue, 1),
                                 ("--max-images", self.max_images, 1),
                                 ("--max-pixels", self.max_pixels, 1),
                                 ("--port", self.port, 0)):
            if value < low:
                raise ConfigError(f"{flag} must be at least {low}, got {value}")
        for flag, value in (("--max-delay-ms", self.max_delay_ms),
                            ("--graceful-timeout", self.graceful_timeout_s)):
            if value < 0:
                raise ConfigError(f"{flag} must be 0 or more, got {value}")
        for flag, value in (("--max-body-mb", self.max_body_mb),
                            ("--read-timeout", self.read_timeout_s),
                            ("--request-timeout", self.request_timeout_s)):
            if not value > 0:
                raise ConfigError(f"{flag} must be more than 0, got {value}")
        if self.port > 65535:
            raise ConfigError(f"--port must be 0 to 65535, got {self.port}")
        for origin in self.cors:
            if origin != "*" and not CORS_ORIGIN.match(origin):
                raise ConfigError(f"--cors {origin!r}: not an origin; pass scheme://host[:port] "
                                  "(e.g. https://app.example.com, no path) or *")
        if self.token is not None and not self.token:
            raise ConfigError("the bearer token is empty; put a secret in --token-file")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))


def parse_models(specs: list[str]) -> dict[str, str]:
    """``MODEL.onnx`` or ``NAME=MODEL.onnx`` arguments -> name -> path, in order.

    Raises:
        ConfigError: a file is missing, or two models have one name.
    """
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name:
            name, path = Path(spec).stem, spec
        if not Path(path).is_file():
            what = "is a folder, not a model file" if Path(path).is_dir() else "model file not found"
            raise ConfigError(f"{path}: {what}; pass a .onnx file from "
                              "`vision-tasks export`")
        if name in models:
            raise ConfigError(f"two models are named '{name}' ({models[name]}, {path}); "
                              "name one with NAME=PATH")
        models[name] = path
    return models


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding white space dropped).

    Raises:
        ConfigError: the file cannot be read or is empty.
    """
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ConfigError(f"--token-file {path}: cannot read it ({reason}); pass a readable "
                          "file holding the token") from None
    if not token:
        raise ConfigError(f"--token-file {path}: the file is empty; put a secret in it "
                          f"(e.g. `openssl rand -hex 32 > {path}`)")
    return token
